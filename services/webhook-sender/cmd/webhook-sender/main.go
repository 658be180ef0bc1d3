// Command webhook-sender runs Herald's webhook delivery service. Its
// configuration comes from HERALD_* environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

func main() { service.Main("webhook-sender", webhooksender.Run) }
