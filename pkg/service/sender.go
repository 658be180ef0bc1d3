package service

import (
	"context"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/delivery"
)

// Sender is the service of one delivery channel: the delivery engine with
// the sender's channel, on the service's base. A sender's New starts its
// base, builds its channel, and hands both here; Sender runs and closes
// them as every sender does.
type Sender struct {
	base   *Base
	engine *delivery.Engine
	// release frees the channel once the engine no longer calls it.
	release func()
	// background is the channel's own work, run beside the engine.
	background []func(context.Context) error
}

// SenderOptions are a sender's parts.
type SenderOptions struct {
	// Channel is the destination type delivered, Deliver delivers one.
	Channel string
	Deliver delivery.Channel
	Config  delivery.Config
	Group   delivery.Group
	// Release frees the channel's resources after the engine has stopped.
	Release func()
	// Background runs beside the engine until ctx ends (idle-session
	// reaping, say).
	Background []func(context.Context) error
}

// NewSender builds the delivery engine of o.Channel on base. On error it
// releases the channel; the caller closes base.
func NewSender(base *Base, o SenderOptions) (*Sender, error) {
	opts := base.DeliveryOptions(o.Channel)
	opts.Deliver, opts.Config, opts.Group = o.Deliver, o.Config, o.Group
	engine, err := delivery.New(opts)
	if err != nil {
		if o.Release != nil {
			o.Release()
		}
		return nil, err
	}
	base.Health.AddCheck("delivery", engine.Ready)
	return &Sender{base: base, engine: engine, release: o.Release, background: o.Background}, nil
}

// Base returns what the service shares with every other.
func (s *Sender) Base() *Base { return s.base }

// Routes adds nothing: a sender serves health and metrics only.
func (s *Sender) Routes(*http.ServeMux) {}

// Close releases the clients: the engine's first, so that no delivery is
// left waiting on a channel that has stopped.
func (s *Sender) Close() {
	s.engine.Close()
	if s.release != nil {
		s.release()
	}
	s.base.Close()
}

// Run follows the configuration and, once it has caught up, delivers until
// ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.base.FollowConfig(ctx) })
	for _, f := range s.background {
		g.Go(func() error { return f(ctx) })
	}
	g.Go(func() error {
		// Destinations (and what they name: templates, profiles) must be
		// known before the first delivery.
		if err := s.base.Config.WaitCaughtUp(ctx); err != nil {
			return nil
		}
		return s.engine.Run(ctx)
	})
	return g.Wait()
}
