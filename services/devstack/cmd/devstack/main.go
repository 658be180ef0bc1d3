// Command devstack runs all of Herald in one process on an embedded Kafka
// broker and schema registry. Its configuration comes from HERALD_*
// environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/services/devstack"
)

func main() { service.Main("devstack", devstack.Run) }
