// Command ingest runs Herald's event ingest service. Its configuration comes
// from HERALD_* environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/services/ingest"
)

func main() { service.Main("ingest", ingest.Run) }
