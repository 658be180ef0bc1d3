// Command bootstrap prepares a fresh Herald installation once: it creates
// the topics and a first tenant. Its configuration comes from HERALD_*
// environment variables (see deploy/bootstrap).
package main

import (
	"github.com/heraldhq/herald/deploy/bootstrap"
	"github.com/heraldhq/herald/pkg/service"
)

func main() { service.Main("bootstrap", bootstrap.Run) }
