// Package envconfig fills a service's configuration struct from HERALD_*
// environment variables, using the struct's env and envDefault tags, and
// runs its Validate method. Every error names the variable to fix.
package envconfig

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/caarlos0/env/v11"
)

// Prefix starts every variable name.
const Prefix = "HERALD_"

// Validator is a configuration that checks itself.
type Validator interface{ Validate() error }

// Load fills cfg, a pointer to a struct, from the environment and validates
// it.
func Load(cfg Validator) error {
	if err := Parse(cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}

// variable returns the environment variable of the struct field named field,
// searching nested structs the way env does, or "" if there is none.
func variable(t reflect.Type, field, prefix string) string {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == field && f.Tag.Get("env") != "" {
			return prefix + f.Tag.Get("env")
		}
		if f.Type.Kind() == reflect.Struct {
			if v := variable(f.Type, field, prefix+f.Tag.Get("envPrefix")); v != "" {
				return v
			}
		}
	}
	return ""
}

// Defaults fills cfg, a pointer to a struct, with its envDefault values
// alone, ignoring the environment: what a service gets when configured in
// code, as the devstack and tests do.
func Defaults(cfg any) error {
	return env.ParseWithOptions(cfg, env.Options{Prefix: Prefix, Environment: map[string]string{}})
}

// Parse fills cfg, a pointer to a struct, from the environment with its
// defaults, as Load does, without validating it: for a caller that sets
// some fields itself before the configuration is complete.
func Parse(cfg any) error {
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: Prefix}); err != nil {
		var pe env.ParseError
		if errors.As(err, &pe) {
			if name := variable(reflect.TypeOf(cfg).Elem(), pe.Name, Prefix); name != "" {
				return fmt.Errorf("configuration: %s: %w", name, pe.Err)
			}
		}
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}
