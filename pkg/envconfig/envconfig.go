// Package envconfig fills a service's configuration struct from HERALD_*
// environment variables, using the struct's env and envDefault tags, and
// runs its Validate method.
package envconfig

import (
	"fmt"

	"github.com/caarlos0/env/v11"
)

// Validator is a configuration that checks itself.
type Validator interface{ Validate() error }

// Load fills cfg from the environment and validates it.
func Load(cfg Validator) error {
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: "HERALD_"}); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}
