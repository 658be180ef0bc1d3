// Package emailsender is the email channel of Herald's delivery engine
// (LogiSense's email notifications): for each notification it renders the
// destination's canned template, resolves the recipients (fixed addresses
// and the account's contacts of the destination's contact types), and
// sends the message through the tenant's SMTP profile.
//
// Email is the channel. It reads the configuration through ConfigView,
// builds each message with go-mail (RFC 2047 headers, multipart/
// alternative bodies, CRLF), and keeps a pool of SMTP sessions per
// profile version: sessions are reused with RSET between messages,
// replaced when the server drops them or answers 421, and closed when
// idle. Connections pass the egress policy when dialled; STARTTLS is
// required for starttls profiles, and credentials only travel over TLS
// unless plaintext SMTP is allowed. Ordering, retries, parking, the
// dead-letter topic and the attempt log are the engine's (pkg/delivery).
package emailsender

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
const Channel = "email"

// Config is the email sender's configuration.
type Config struct {
	service.Config
	Delivery delivery.Config
	// Egress judges SMTP hosts as it judges webhook hosts, but for the
	// ports, which Ports gives.
	Egress egress.Config
	// Group is the consumer group of the sender's replicas.
	Group string `env:"EMAIL_GROUP" envDefault:"herald-email-sender"`
	// InstanceID makes the replica a static group member (use the pod
	// name), so a restart takes its partitions back at once.
	InstanceID string `env:"EMAIL_INSTANCE_ID"`
	// Timeout bounds the dial, each SMTP command, and the message's DATA.
	Timeout time.Duration `env:"EMAIL_TIMEOUT" envDefault:"30s"`
	// PoolSize bounds the SMTP sessions open to one profile.
	PoolSize int `env:"EMAIL_POOL_SIZE" envDefault:"4"`
	// IdleTimeout closes a session unused for that long.
	IdleTimeout time.Duration `env:"EMAIL_IDLE_TIMEOUT" envDefault:"30s"`
	// SessionMessages closes a session after that many messages, for
	// servers that cap them; 0 means no limit.
	SessionMessages int `env:"EMAIL_SESSION_MESSAGES" envDefault:"0"`
	// Ports are the ports an SMTP host may use; "any" allows every port.
	Ports string `env:"EMAIL_PORTS" envDefault:"25,465,587,2525"`
	// AllowPlaintext permits profiles with tls none, and AUTH without
	// TLS; only the devstack and tests set it.
	AllowPlaintext bool `env:"EMAIL_ALLOW_PLAINTEXT"`

	// RootCAs, when set, replaces the system's root certificates (tests).
	RootCAs *x509.CertPool `env:"-"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("HERALD_EMAIL_GROUP: required")
	case c.Timeout <= 0:
		return errors.New("HERALD_EMAIL_TIMEOUT: must be positive")
	case c.PoolSize < 1:
		return errors.New("HERALD_EMAIL_POOL_SIZE: must be at least 1")
	case c.IdleTimeout <= 0:
		return errors.New("HERALD_EMAIL_IDLE_TIMEOUT: must be positive")
	case c.SessionMessages < 0:
		return errors.New("HERALD_EMAIL_SESSION_MESSAGES: must not be negative")
	}
	if _, err := c.policy(); err != nil {
		return err
	}
	if err := c.Delivery.Validate(); err != nil {
		return err
	}
	return c.Config.Validate()
}

// policy is the egress policy for SMTP hosts: the shared one, with the
// SMTP ports.
func (c Config) policy() (*egress.Policy, error) {
	if err := c.Egress.Validate(); err != nil {
		return nil, err
	}
	e := c.Egress
	e.Ports, e.PortsVariable = c.Ports, "HERALD_EMAIL_PORTS"
	return egress.New(e)
}

// New connects the email sender: the delivery engine with the email
// channel, which closes idle SMTP sessions beside it.
func New(ctx context.Context, c Config) (*service.Sender, error) {
	policy, err := c.policy()
	if err != nil {
		return nil, err
	}
	base, err := service.Start(ctx, "email-sender", c.Config)
	if err != nil {
		return nil, err
	}
	email := NewEmail(base.Config, Options{
		Policy: policy, Timeout: c.Timeout, PoolSize: c.PoolSize, IdleTimeout: c.IdleTimeout,
		SessionMessages: c.SessionMessages, AllowPlaintext: c.AllowPlaintext, RootCAs: c.RootCAs,
		Tracer: base.Tracer("herald/email-sender"),
	})
	s, err := service.NewSender(base, service.SenderOptions{
		Channel: Channel, Deliver: email, Config: c.Delivery, Release: email.Close,
		Group:      delivery.Group{ID: c.Group, InstanceID: c.InstanceID},
		Background: []func(context.Context) error{email.Run},
	})
	if err != nil {
		base.Close()
		return nil, err
	}
	return s, nil
}

// Run runs the email sender until ctx ends.
func Run(ctx context.Context, c Config) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, s)
}
