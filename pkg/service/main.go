package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/heraldhq/herald/pkg/envconfig"
)

// Main is a service command's main: it loads C from the environment, runs
// run until SIGINT or SIGTERM, and exits 2 on bad configuration, 1 on
// failure.
func Main[C any, P interface {
	*C
	envconfig.Validator
}](name string, run func(context.Context, C) error) {
	var cfg C
	if err := envconfig.Load(P(&cfg)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
