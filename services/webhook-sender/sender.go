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
	"time"

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

// New connects the webhook sender: the delivery engine with the webhook
// channel.
func New(ctx context.Context, c Config) (*service.Sender, error) {
	policy, err := egress.New(c.Egress)
	if err != nil {
		return nil, err
	}
	base, err := service.Start(ctx, "webhook-sender", c.Config)
	if err != nil {
		return nil, err
	}
	wh := NewWebhook(policy, c.Delivery.Concurrency, c.Timeout, c.RootCAs)
	s, err := service.NewSender(base, service.SenderOptions{
		Channel: Channel, Deliver: wh, Config: c.Delivery, Release: wh.Close,
		Group: delivery.Group{ID: c.Group, InstanceID: c.InstanceID},
	})
	if err != nil {
		base.Close()
		return nil, err
	}
	return s, nil
}

// Run runs the webhook sender until ctx ends.
func Run(ctx context.Context, c Config) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, s)
}
