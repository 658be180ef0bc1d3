// Command eventbridge-sender runs Herald's Amazon EventBridge delivery
// service. Its configuration comes from HERALD_* environment variables
// (see the README) and the AWS SDK's own (credentials, endpoints).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

func main() { service.Main("eventbridge-sender", eventbridgesender.Run) }
