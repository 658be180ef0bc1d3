// Command rule-evaluator runs Herald's rule evaluator. Its configuration
// comes from HERALD_* environment variables (see the README).
package main

import (
	"github.com/heraldhq/herald/pkg/service"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
)

func main() { service.Main("rule-evaluator", ruleevaluator.Run) }
