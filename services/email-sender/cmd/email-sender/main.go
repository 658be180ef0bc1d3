// Command email-sender runs Herald's email delivery service. Its
// configuration comes from HERALD_* environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	emailsender "github.com/heraldhq/herald/services/email-sender"
)

func main() { service.Main("email-sender", emailsender.Run) }
