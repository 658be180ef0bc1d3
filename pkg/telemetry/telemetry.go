// Package telemetry sets up Herald's logging: log/slog, JSON in production
// and text in the devstack, with the same attribute keys everywhere
// (tenant, rule, destination, notification, topic, partition, offset).
package telemetry

import (
	"context"
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

// Logger returns a logger writing to w.
func Logger(c Config, w io.Writer) (*slog.Logger, error) {
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
	return slog.New(h), nil
}

// AtLeast returns a logger that drops log's records below min. Kafka
// clients log every group and connection event at info; Herald keeps
// those for debugging.
func AtLeast(log *slog.Logger, min slog.Level) *slog.Logger {
	return slog.New(&minLevel{Handler: log.Handler(), min: min})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h *minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h *minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return &minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h *minLevel) WithGroup(name string) slog.Handler {
	return &minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
