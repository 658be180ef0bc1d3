// Package webhooksender is the webhook channel of Herald's delivery engine:
// it signs each notification per Standard Webhooks and POSTs it to the
// tenant's endpoint, through a dialer that refuses non-public addresses
// after DNS resolution. Ordering, retries, parking, the dead-letter topic,
// the attempt log and disabling failing destinations are the engine's
// (pkg/delivery).
package webhooksender

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/service"
)

// Channel is the destination type this sender delivers.
const Channel = "webhook"

// Config is the webhook sender's configuration.
type Config struct {
	service.Config
	Delivery delivery.Config
	Egress   egress.Config
	// Group is the consumer group of the sender's replicas.
	Group string `env:"WEBHOOK_GROUP" envDefault:"herald-webhook-sender"`
	// InstanceID makes the replica a static group member (use the pod
	// name), so a restart takes its partitions back at once.
	InstanceID string `env:"WEBHOOK_INSTANCE_ID"`
	// Timeout bounds one request, from dial to the end of the response.
	Timeout time.Duration `env:"WEBHOOK_TIMEOUT" envDefault:"10s"`

	// RootCAs, when set, replaces the system's root certificates (tests).
	RootCAs *x509.CertPool `env:"-"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("HERALD_WEBHOOK_GROUP: required")
	case c.Timeout <= 0:
		return errors.New("HERALD_WEBHOOK_TIMEOUT: must be positive")
	}
	if err := c.Delivery.Validate(); err != nil {
		return err
	}
	if err := c.Egress.Validate(); err != nil {
		return err
	}
	return c.Config.Validate()
}

// Sender runs the delivery engine with the webhook channel.
type Sender struct {
	base    *service.Base
	webhook *Webhook
	engine  *delivery.Engine
}

// New connects the webhook sender.
func New(ctx context.Context, c Config) (*Sender, error) {
	policy, err := egress.New(c.Egress)
	if err != nil {
		return nil, err
	}
	base, err := service.Start(ctx, "webhook-sender", c.Config)
	if err != nil {
		return nil, err
	}
	wh := NewWebhook(policy, c.Delivery.Concurrency, c.Timeout, c.RootCAs)
	opts := base.DeliveryOptions(Channel)
	opts.Deliver, opts.Config = wh, c.Delivery
	opts.Group = delivery.Group{ID: c.Group, InstanceID: c.InstanceID}
	engine, err := delivery.New(opts)
	if err != nil {
		wh.Close()
		base.Close()
		return nil, err
	}
	base.Health.AddCheck("delivery", engine.Ready)
	return &Sender{base: base, webhook: wh, engine: engine}, nil
}

// Run runs the webhook sender until ctx ends.
func Run(ctx context.Context, c Config) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, s)
}

// Base returns what the service shares with every other.
func (s *Sender) Base() *service.Base { return s.base }

// Routes adds nothing: the sender serves health only.
func (s *Sender) Routes(*http.ServeMux) {}

// Close releases the clients.
func (s *Sender) Close() {
	s.engine.Close()
	s.webhook.Close()
	s.base.Close()
}

// Run follows the configuration and, once it has caught up, delivers until
// ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.base.FollowConfig(ctx) })
	g.Go(func() error {
		// Destinations must be known before the first delivery.
		if err := s.base.Config.WaitCaughtUp(ctx); err != nil {
			return nil
		}
		return s.engine.Run(ctx)
	})
	return g.Wait()
}
