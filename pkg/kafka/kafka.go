// Package kafka builds every Herald Kafka client from one configuration and
// creates the topics Herald uses.
//
// Config is filled from HERALD_KAFKA_* variables. ClientOptions is the only
// place where kgo options common to all clients are set (seeds, client id,
// TLS, SASL, logging, group protocol, tracing hooks); each service adds
// what is particular to its clients (consumer group, transactional id) on
// top. Topics names every topic with the configured prefix, and
// EnsureTopics creates the missing ones. RecordContext and TraceHeaders
// carry a record's W3C trace context to the work it causes.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/heraldhq/herald/pkg/telemetry"
)

// Config says how to reach the cluster and how Herald's topics are laid out.
type Config struct {
	Brokers           []string `env:"BROKERS" envDefault:"127.0.0.1:9092" envSeparator:","`
	TopicPrefix       string   `env:"TOPIC_PREFIX" envDefault:"herald."`
	Partitions        int32    `env:"PARTITIONS" envDefault:"6"`
	ReplicationFactor int16    `env:"REPLICATION_FACTOR" envDefault:"-1"`
	CreateTopics      bool     `env:"CREATE_TOPICS" envDefault:"true"`
	TLS               bool     `env:"TLS"`
	TLSCAFile         string   `env:"TLS_CA_FILE"`
	SASLMechanism     string   `env:"SASL_MECHANISM"`
	SASLUsername      string   `env:"SASL_USERNAME"`
	SASLPassword      string   `env:"SASL_PASSWORD"`
	// GroupProtocol is the consumer group protocol: "classic" or
	// "consumer" (KIP-848, Kafka 4.0+); empty means classic.
	GroupProtocol string `env:"GROUP_PROTOCOL" envDefault:"classic"`
	// Tracing, when on, gives each record written in a traced context a
	// publish span and carries its traceparent in the record's headers.
	Tracing *telemetry.Tracing `env:"-"`
}

// Validate reports the first setting that cannot work, naming its variable.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("HERALD_KAFKA_BROKERS: at least one broker is required")
	}
	if c.Partitions < 1 {
		return errors.New("HERALD_KAFKA_PARTITIONS: must be at least 1")
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return fmt.Errorf("HERALD_KAFKA_SASL_MECHANISM: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASLMechanism)
	}
	switch c.GroupProtocol {
	case "", GroupProtocolClassic, GroupProtocolConsumer:
	default:
		return fmt.Errorf("HERALD_KAFKA_GROUP_PROTOCOL: %q is not %s or %s", c.GroupProtocol, GroupProtocolClassic, GroupProtocolConsumer)
	}
	return nil
}

// Consumer group protocols, the values of HERALD_KAFKA_GROUP_PROTOCOL.
const (
	// GroupProtocolClassic: members join and sync, and one of them
	// assigns the partitions.
	GroupProtocolClassic = "classic"
	// GroupProtocolConsumer: the broker assigns the partitions and
	// members reconcile through heartbeats (KIP-848).
	GroupProtocolConsumer = "consumer"
)

// Topics returns the topic names for this configuration.
func (c Config) Topics() Topics {
	p := c.TopicPrefix
	return Topics{
		Events: p + "events", Notifications: p + "notifications", Config: p + "config", EventsDLQ: p + "events.dlq",
		Deliveries: p + "deliveries", Subscriptions: p + "subscriptions", Timers: p + "timers", prefix: p,
	}
}

// Channels names the delivery channels; each has a retry and a
// dead-letter topic.
var Channels = []string{"webhook", "email", "eventbridge"}

// Topics names Herald's topics.
type Topics struct {
	Events        string
	Notifications string
	Config        string
	// EventsDLQ receives events the rule evaluator cannot decode.
	EventsDLQ string
	// Deliveries is the log of delivery attempts, keyed by notification id.
	Deliveries string
	// Subscriptions holds the per-resource subscriptions (compacted),
	// keyed {tenant}/{resourceType}/{resourceId}/{notificationName}.
	Subscriptions string
	// Timers holds the rule evaluator's pending timers (compacted),
	// partitioned as the events topic: an event's timers live on the
	// partition number of the event.
	Timers string

	prefix string
}

// Retry returns the retry topic of a delivery channel: deliveries waiting
// for their next attempt, keyed as notifications and partitioned alike.
func (t Topics) Retry(channel string) string { return t.prefix + channel + ".retry" }

// DLQ returns the dead-letter topic of a delivery channel.
func (t Topics) DLQ(channel string) string { return t.prefix + channel + ".dlq" }

// ClientOptions returns the options every Herald client starts from.
func ClientOptions(c Config, service string, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("herald-" + service),
		kgo.WithLogger(kslog.New(telemetry.AtLeast(log.With("component", "kafka"), slog.LevelWarn))),
		// Herald's records are small and latency matters more than batch
		// size: a notification should leave within milliseconds.
		kgo.ProducerLinger(0),
	}
	if c.Tracing.Enabled() {
		opts = append(opts, kgo.WithHooks(newPublishTracing(c.Tracing.Provider(), "herald-"+service)))
	}
	if c.GroupProtocol == GroupProtocolConsumer {
		// franz-go joins with KIP-848 only through ServerSideBalancer
		// (kgo.GroupProtocol names the classic protocol type) and keeps
		// classic by default: before Kafka 4.3 a commit racing a heartbeat
		// can fail with STALE_MEMBER_EPOCH, which costs Herald a
		// redelivery or a retried transaction, never a loss. The broker's
		// assignor follows the client's first balancer: range for the
		// senders, which keeps a notifications partition with its retry
		// partition; uniform for the evaluator's cooperative-sticky.
		// Session timeout and heartbeat interval become the broker's
		// group.consumer.* settings. Clients without a group ignore it.
		opts = append(opts, kgo.ServerSideBalancer())
	}
	if c.TLS || c.TLSCAFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("HERALD_KAFKA_TLS_CA_FILE: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("HERALD_KAFKA_TLS_CA_FILE: no certificate in %s", c.TLSCAFile)
			}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUsername, Pass: c.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

// dlqRetention keeps dead letters for 90 days, long enough for a tenant to
// fix an endpoint and replay them.
const dlqRetention = "7776000000"

// EnsureTopics creates Herald's topics that do not exist yet. The config,
// subscriptions and timers topics are compacted; the others delete by
// retention.
// A channel's retry topic has as many partitions as the notifications
// topic, so that a key lands on the same partition number in both.
func EnsureTopics(ctx context.Context, cl *kgo.Client, c Config) error {
	t := c.Topics()
	adm := kadm.NewClient(cl)
	compact := "compact"
	if err := createTopic(ctx, adm, t.Config, 1, c.ReplicationFactor, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return err
	}
	// Partitioned, unlike config: millions of subscriptions replay in
	// parallel fetches.
	if err := createTopic(ctx, adm, t.Subscriptions, c.Partitions, c.ReplicationFactor, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return err
	}
	// As many partitions as events, for the replica that owns an event's
	// partition owns the timers the event sets.
	if err := createTopic(ctx, adm, t.Timers, c.Partitions, c.ReplicationFactor, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return err
	}
	for _, name := range []string{t.Events, t.Notifications, t.EventsDLQ, t.Deliveries} {
		if err := createTopic(ctx, adm, name, c.Partitions, c.ReplicationFactor, nil); err != nil {
			return err
		}
	}
	retention := dlqRetention
	for _, ch := range Channels {
		if err := createTopic(ctx, adm, t.Retry(ch), c.Partitions, c.ReplicationFactor, nil); err != nil {
			return err
		}
		if err := createTopic(ctx, adm, t.DLQ(ch), c.Partitions, c.ReplicationFactor, map[string]*string{"retention.ms": &retention}); err != nil {
			return err
		}
	}
	return nil
}

// createTopic creates one topic, treating "already exists" as success.
// A freshly started broker may answer that it has no controller yet, so the
// call is retried for a short while.
func createTopic(ctx context.Context, adm *kadm.Client, name string, partitions int32, rf int16, configs map[string]*string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := adm.CreateTopic(ctx, partitions, rf, configs, name)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			return nil
		}
		var ke *kerr.Error
		if !errors.As(err, &ke) || !ke.Retriable || time.Now().After(deadline) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
