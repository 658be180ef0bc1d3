// Package service is what every Herald service starts from: the shared
// configuration (Kafka, schema registry, logging, HTTP address), the Kafka
// client options, the topics, the schema registry with Herald's schemas
// registered, and the followed configuration view. Serve runs a service's
// HTTP routes and background loops together and shuts both down in order.
package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/telemetry"
	"github.com/heraldhq/herald/schemas"
)

// Config is the part of every service's configuration that they share.
type Config struct {
	Kafka     kafka.Config   `envPrefix:"KAFKA_"`
	Registry  RegistryConfig `envPrefix:"REGISTRY_"`
	Telemetry telemetry.Config
	HTTPAddr  string `env:"HTTP_ADDR" envDefault:":8080"`
	// Secrets are the keys that seal secrets in the config topic.
	Secrets configstore.KeyConfig

	// Logger, when set, is used instead of one built from Telemetry.
	Logger *slog.Logger `env:"-"`
	// Metrics, when set, is shared with the process's other services.
	Metrics *telemetry.Metrics `env:"-"`
	// Tracing, when set, is shared with the process's other services;
	// otherwise the service makes its own from the OTEL_* variables.
	Tracing *telemetry.Tracing `env:"-"`
}

// RegistryConfig says where the schema registry is and whether to register
// Herald's built-in schemas at start.
type RegistryConfig struct {
	URL string `env:"URL" envDefault:"http://127.0.0.1:8081"`
	// RegisterSchemas registers the built-in schemas when the registry
	// lacks them.
	RegisterSchemas bool `env:"REGISTER_SCHEMAS" envDefault:"true"`
	// LatestTTL bounds how long a subject's latest schema is cached, so
	// that new versions registered upstream are used without a restart.
	LatestTTL time.Duration `env:"LATEST_TTL" envDefault:"30s"`
	// Timeout bounds one request to the registry.
	Timeout time.Duration `env:"TIMEOUT" envDefault:"10s"`
}

// Validate checks the shared settings.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.Registry.URL == "" {
		return errors.New("HERALD_REGISTRY_URL: required")
	}
	if c.HTTPAddr == "" {
		return errors.New("HERALD_HTTP_ADDR: required")
	}
	return c.Secrets.Validate()
}

// Base holds what a running service shares with every other.
type Base struct {
	Name      string
	Log       *slog.Logger
	Kafka     kafka.Config
	KafkaOpts []kgo.Opt
	Topics    kafka.Topics
	Registry  *avro.Registry
	Config    *configstore.Store
	Health    *httpapi.Health
	Metrics   *telemetry.Metrics
	Tracing   *telemetry.Tracing
	// ownTracing is set when Tracing was made for this service alone, so
	// that Close shuts it down.
	ownTracing bool
}

// Start connects a service named name: Kafka options, topics, registry
// and schemas, and the configuration view (opened, not yet followed).
func Start(ctx context.Context, name string, c Config) (*Base, error) {
	log := c.Logger
	if log == nil {
		var err error
		if log, err = telemetry.Logger(c.Telemetry, os.Stderr); err != nil {
			return nil, err
		}
		log = log.With("service", name)
	}
	tracing, own := c.Tracing, c.Tracing == nil
	if own {
		var err error
		if tracing, err = telemetry.NewTracing(ctx, name); err != nil {
			return nil, err
		}
	}
	b, err := start(ctx, name, c, log, tracing)
	if err != nil {
		if own {
			_ = tracing.Shutdown(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	b.ownTracing = own
	return b, nil
}

func start(ctx context.Context, name string, c Config, log *slog.Logger, tracing *telemetry.Tracing) (*Base, error) {
	c.Kafka.Tracing = tracing
	opts, err := kafka.ClientOptions(c.Kafka, name, log)
	if err != nil {
		return nil, err
	}
	metrics := c.Metrics
	if metrics == nil {
		if metrics, err = telemetry.NewMetrics(); err != nil {
			return nil, err
		}
	}
	b := &Base{Name: name, Log: log, Kafka: c.Kafka, KafkaOpts: opts, Topics: c.Kafka.Topics(), Health: &httpapi.Health{}, Metrics: metrics, Tracing: tracing}
	if c.Kafka.CreateTopics {
		if err := b.ensureTopics(ctx); err != nil {
			return nil, err
		}
	}
	src, err := sr.NewClient(sr.URLs(c.Registry.URL), sr.HTTPClient(&http.Client{Timeout: cmp.Or(c.Registry.Timeout, 10*time.Second)}))
	if err != nil {
		return nil, fmt.Errorf("HERALD_REGISTRY_URL: %w", err)
	}
	b.Registry = avro.NewRegistry(src, c.Registry.LatestTTL)
	if c.Registry.RegisterSchemas {
		if err := RegisterSchemas(ctx, b.Registry, b.Topics); err != nil {
			return nil, err
		}
	}
	keys, err := c.Secrets.Keyring()
	if err != nil {
		return nil, err
	}
	if b.Config, err = configstore.Open(opts, b.Topics.Config, log, configstore.WithKeyring(keys)); err != nil {
		return nil, err
	}
	b.Health.AddCheck("config", func() error {
		if !b.Config.CaughtUp() {
			return errors.New("configuration not caught up")
		}
		return nil
	})
	return b, nil
}

func (b *Base) ensureTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(b.KafkaOpts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	return kafka.EnsureTopics(ctx, cl, b.Kafka)
}

// NewClient returns a Kafka client with the shared options plus extra.
func (b *Base) NewClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), b.KafkaOpts...), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// FollowConfig catches the configuration view up, then follows it until ctx
// ends.
func (b *Base) FollowConfig(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.Config.Run(ctx) })
	g.Go(func() error {
		if err := b.Config.WaitCaughtUp(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("catch up with configuration: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// Close releases the configuration view, and exports the spans still
// buffered when the service has a tracer provider of its own.
func (b *Base) Close() {
	b.Config.Close()
	if b.ownTracing {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Tracing.Shutdown(ctx); err != nil {
			b.Log.Warn("trace export at shutdown", "err", err)
		}
	}
}

// EventSubject returns the registry subject of an entity type's events on
// the events topic (TopicRecordNameStrategy).
func (b *Base) EventSubject(entityType string) string {
	return event.Subject(b.Topics.Events, entityType)
}

// NotificationSubject returns the registry subject of notifications.
func (b *Base) NotificationSubject() string {
	return b.Topics.Notifications + "-" + schemas.NotificationRecord
}

// DeliveryAttemptSubject returns the registry subject of delivery attempts.
func (b *Base) DeliveryAttemptSubject() string {
	return b.Topics.Deliveries + "-" + schemas.DeliveryAttemptRecord
}

// RegisterSchemas registers the built-in event schemas, the Notification
// schema and the DeliveryAttempt schema, with FULL_TRANSITIVE compatibility.
func RegisterSchemas(ctx context.Context, reg *avro.Registry, t kafka.Topics) error {
	for _, r := range schemas.Events() {
		if err := reg.Register(ctx, t.Events+"-"+r.Name, r.Versions, sr.CompatFullTransitive); err != nil {
			return err
		}
	}
	n := schemas.Notification()
	if err := reg.Register(ctx, t.Notifications+"-"+n.Name, n.Versions, sr.CompatFullTransitive); err != nil {
		return err
	}
	d := schemas.DeliveryAttempt()
	return reg.Register(ctx, t.Deliveries+"-"+d.Name, d.Versions, sr.CompatFullTransitive)
}

// Component is a service's parts as Serve runs them.
type Component interface {
	// Routes adds the service's HTTP routes.
	Routes(mux *http.ServeMux)
	// Run does the service's background work until ctx ends.
	Run(ctx context.Context) error
	// Close releases the service's clients.
	Close()
	// Base returns what the service shares with every other.
	Base() *Base
}

// Serve runs c's background work and serves its routes, with the health
// endpoints, on addr until ctx ends or either fails.
func Serve(ctx context.Context, addr string, c Component) error {
	defer c.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("HERALD_HTTP_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	c.Base().Health.Register(mux)
	mux.Handle("GET /metrics", c.Base().Metrics.Handler())
	c.Routes(mux)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.Run(gctx) })
	g.Go(func() error {
		return httpapi.Serve(gctx, ln, c.Base().Tracing.Handler(mux), 10*time.Second, c.Base().Log)
	})
	return g.Wait()
}

// Tracer returns the named tracer when tracing is on, nil otherwise, so
// that a nil check is all a hot path pays when it is off.
func (b *Base) Tracer(name string) trace.Tracer {
	if !b.Tracing.Enabled() {
		return nil
	}
	return b.Tracing.Tracer(name)
}

// DeliveryOptions returns a delivery engine's options for channel on the
// service's Kafka, registry, configuration, log and metrics; the sender
// adds its channel, its configuration and its group.
func (b *Base) DeliveryOptions(channel string) delivery.Options {
	return delivery.Options{
		Channel: channel,
		Topics: delivery.Topics{
			Notifications: b.Topics.Notifications, Retry: b.Topics.Retry(channel),
			DLQ: b.Topics.DLQ(channel), Deliveries: b.Topics.Deliveries,
		},
		Subjects:     delivery.Subjects{Notification: b.NotificationSubject(), Attempt: b.DeliveryAttemptSubject()},
		Kafka:        b.KafkaOpts,
		Registry:     b.Registry,
		Destinations: b.Config,
		Log:          b.Log,
		Meter:        b.Metrics.Meter("herald/delivery"),
		Tracer:       b.Tracer("herald/delivery"),
	}
}
