package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
)

// Tenant is the tenant a bench command's notifications belong to.
const Tenant = "bench"

// Broker is what a bench command runs on: a Kafka cluster with Herald's
// topics under a prefix of the run's own, so that earlier runs' topics and
// groups on the same cluster are left alone, and an embedded schema
// registry (srfake) holding Herald's schemas.
type Broker struct {
	// Kafka is the configuration a service under measure is given.
	Kafka kafka.Config
	// RegistryURL is the registry's address.
	RegistryURL string
	// Opts are the client options a service builds from Kafka.
	Opts []kgo.Opt
	// Client writes the run's records and reads its groups' offsets.
	Client *kgo.Client
	// Registry encodes the run's records.
	Registry *avro.Registry

	closers []func()
}

// NewBroker makes the topics, partitions each, on the seed brokers and
// registers the schemas. Close releases what it started.
func NewBroker(ctx context.Context, seeds []string, partitions int32, log *slog.Logger) (b *Broker, err error) {
	if len(seeds) == 0 {
		return nil, errors.New("no seed brokers")
	}
	b = &Broker{}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	prefix := "bench-" + hex.EncodeToString(id) + "."
	reg := srfake.New()
	b.closers = append(b.closers, reg.Close)
	b.RegistryURL = reg.URL()
	b.Kafka = kafka.Config{Brokers: seeds, TopicPrefix: prefix, Partitions: partitions, ReplicationFactor: 1, CreateTopics: true}
	if b.Opts, err = kafka.ClientOptions(b.Kafka, "bench", log); err != nil {
		return nil, err
	}
	if b.Client, err = kgo.NewClient(b.Opts...); err != nil {
		return nil, err
	}
	b.closers = append(b.closers, b.Client.Close)
	if err := kafka.EnsureTopics(ctx, b.Client, b.Kafka); err != nil {
		return nil, err
	}
	src, err := sr.NewClient(sr.URLs(b.RegistryURL))
	if err != nil {
		return nil, err
	}
	b.Registry = avro.NewRegistry(src, time.Minute)
	if err := service.RegisterSchemas(ctx, b.Registry, b.Kafka.Topics()); err != nil {
		return nil, err
	}
	return b, nil
}

// Close closes the client and the registry.
func (b *Broker) Close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
	b.closers = nil
}

// Put stores docs in the configuration topic.
func (b *Broker) Put(ctx context.Context, log *slog.Logger, docs ...configstore.Document) error {
	store, err := configstore.Open(b.Opts, b.Kafka.Topics().Config, log)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = store.Run(ctx) }()
	if err := store.WaitCaughtUp(ctx); err != nil {
		return err
	}
	for _, d := range docs {
		if _, err := store.Put(ctx, d, 0); err != nil {
			return fmt.Errorf("put %s %s: %w", d.Kind, d.ID, err)
		}
	}
	return nil
}

// Produce writes the records record returns for 0 to n-1, a thousand at a
// time.
func (b *Broker) Produce(ctx context.Context, n int, record func(i int) (*kgo.Record, error)) error {
	recs := make([]*kgo.Record, 0, 1000)
	for i := range n {
		r, err := record(i)
		if err != nil {
			return err
		}
		recs = append(recs, r)
		if len(recs) == cap(recs) || i == n-1 {
			if err := b.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return err
			}
			recs = recs[:0]
		}
	}
	return nil
}

// ProduceNotifications writes n sample notifications of Tenant to
// destination over keys ordering keys, as the evaluator would.
func (b *Broker) ProduceNotifications(ctx context.Context, n, keys int, destination string, ordered bool) error {
	topic := b.Kafka.Topics().Notifications
	schema, err := b.Registry.Latest(ctx, topic+"-herald.Notification")
	if err != nil {
		return err
	}
	return b.Produce(ctx, n, func(i int) (*kgo.Record, error) {
		nt := *notification.Sample()
		nt.TenantID, nt.OrderingKey, nt.Destinations = Tenant, "acct-"+strconv.Itoa(i%keys), []string{destination}
		nt.Ordered = ordered
		nt.ID = notification.ID(Tenant, strconv.Itoa(i), "rule")
		v, err := schema.Encode(&nt)
		if err != nil {
			return nil, err
		}
		return &kgo.Record{Topic: topic, Key: event.RecordKey(Tenant, nt.OrderingKey), Value: v}, nil
	})
}
