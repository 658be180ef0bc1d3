// Command admin-api runs Herald's configuration API. Its configuration comes
// from HERALD_* environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

func main() { service.Main("admin-api", adminapi.Run) }
