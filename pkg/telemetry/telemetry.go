// Package telemetry sets up Herald's logging: log/slog, JSON in production
// and text in the devstack, with the same attribute keys everywhere
// (tenant, rule, destination, notification, topic, partition, offset).
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Config selects the log format and level.
type Config struct {
	LogFormat string `env:"LOG_FORMAT" envDefault:"json"`
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
}

// Logger returns the logger for service, writing to w.
func Logger(c Config, service string, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("HERALD_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(c.LogFormat) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("HERALD_LOG_FORMAT: %q is not json or text", c.LogFormat)
	}
	return slog.New(h).With("service", service), nil
}
