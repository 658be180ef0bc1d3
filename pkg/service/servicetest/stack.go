package servicetest

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
)

// Stack is what an integration test runs a service against: its own
// topics on the real broker, a registry holding Herald's schemas, the
// followed configuration view, and a client to write with.
type Stack struct {
	Kafka    kafka.Config
	Topics   kafka.Topics
	Registry *srfake.Registry // the registry a service under test points at
	Schemas  *avro.Registry   // a codec on Registry
	Store    *configstore.Store
	Client   *kgo.Client
	Log      *slog.Logger
}

// NewStack creates a stack's topics of three partitions under a prefix of
// its own on the broker that kafkatest.Brokers names, registers Herald's
// schemas, and follows the configuration view until the test ends.
func NewStack(t testing.TB) *Stack {
	t.Helper()
	kc := kafka.Config{Brokers: kafkatest.Brokers(t), TopicPrefix: kafkatest.Prefix(t), Partitions: 3, ReplicationFactor: 1, CreateTopics: true}
	s := &Stack{Kafka: kc, Topics: kc.Topics(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.Registry = srfake.New()
	t.Cleanup(s.Registry.Close)
	src, err := sr.NewClient(sr.URLs(s.Registry.URL()))
	if err != nil {
		t.Fatal(err)
	}
	s.Schemas = avro.NewRegistry(src, time.Minute)
	opts, err := kafka.ClientOptions(kc, "test", s.Log)
	if err != nil {
		t.Fatal(err)
	}
	if s.Client, err = kgo.NewClient(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Client.Close)
	ctx := t.Context()
	if err := kafka.EnsureTopics(ctx, s.Client, kc); err != nil {
		t.Fatal(err)
	}
	if err := service.RegisterSchemas(ctx, s.Schemas, s.Topics); err != nil {
		t.Fatal(err)
	}
	if s.Store, err = configstore.Open(opts, s.Topics.Config, s.Log); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Store.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done; s.Store.Close() })
	if err := s.Store.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// Env is the environment that points a service process at the stack: its
// broker, topics and registry, an HTTP server on a free port, and errors
// only in the log.
func (s *Stack) Env() []string {
	return []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(s.Kafka.Brokers, ","),
		"HERALD_KAFKA_TOPIC_PREFIX=" + s.Kafka.TopicPrefix,
		"HERALD_KAFKA_PARTITIONS=" + strconv.Itoa(int(s.Kafka.Partitions)),
		"HERALD_KAFKA_REPLICATION_FACTOR=" + strconv.Itoa(int(s.Kafka.ReplicationFactor)),
		"HERALD_REGISTRY_URL=" + s.Registry.URL(),
		"HERALD_HTTP_ADDR=127.0.0.1:0", "HERALD_LOG_LEVEL=error",
	}
}

// Put stores spec as tenant's configuration document of kind and id and
// returns the document as stored, failing the test if it cannot.
func Put(t testing.TB, store *configstore.Store, tenant, kind, id string, spec any) configstore.Document {
	t.Helper()
	doc, err := configstore.NewDocument(tenant, kind, id, spec)
	if err == nil {
		doc, err = store.Put(t.Context(), doc, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Reader reads the committed records of topics from their start, on
// brokers, until the test ends.
func Reader(t testing.TB, brokers []string, topics ...string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Read reads topic from its start with a client of opts until it has read
// n records or within has passed, and returns the records it read.
func Read(t testing.TB, opts []kgo.Opt, topic string, n int, within time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(slices.Clip(opts), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	return out
}
