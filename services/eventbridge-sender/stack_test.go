package eventbridgesender_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

// stack is what an integration test runs the sender against: its own
// topics on the real broker, a registry, the configuration view, and a
// producer of notifications.
type stack struct {
	t        *testing.T
	kafka    kafka.Config
	topics   kafka.Topics
	registry *srfake.Registry
	reg      *avro.Registry
	store    *configstore.Store
	cl       *kgo.Client
	log      *slog.Logger
}

func newStack(t *testing.T) *stack {
	t.Helper()
	kc := kafka.Config{Brokers: kafkatest.Brokers(t), TopicPrefix: kafkatest.Prefix(t), Partitions: 3, ReplicationFactor: 1, CreateTopics: true}
	s := &stack{t: t, kafka: kc, topics: kc.Topics(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.registry = srfake.New()
	t.Cleanup(s.registry.Close)
	src, err := sr.NewClient(sr.URLs(s.registry.URL()))
	if err != nil {
		t.Fatal(err)
	}
	s.reg = avro.NewRegistry(src, time.Minute)
	opts, err := kafka.ClientOptions(kc, "test", s.log)
	if err != nil {
		t.Fatal(err)
	}
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	ctx := t.Context()
	if err := kafka.EnsureTopics(ctx, s.cl, kc); err != nil {
		t.Fatal(err)
	}
	if err := service.RegisterSchemas(ctx, s.reg, s.topics); err != nil {
		t.Fatal(err)
	}
	if s.store, err = configstore.Open(opts, s.topics.Config, s.log); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.store.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done; s.store.Close() })
	if err := s.store.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// destination stores an EventBridge destination.
func (s *stack) destination(id string, d configstore.Destination) {
	s.t.Helper()
	doc, err := configstore.NewDocument(tenant, configstore.KindDestination, id, d)
	if err == nil {
		_, err = s.store.Put(s.t.Context(), doc, 0)
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// produce writes notes to the notifications topic, in order, for dest.
func (s *stack) produce(dest string, ordered bool, notes []*notification.Notification) {
	s.t.Helper()
	schema, err := s.reg.Latest(s.t.Context(), s.topics.Notifications+"-herald.Notification")
	if err != nil {
		s.t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, len(notes))
	for _, n := range notes {
		n.Destinations, n.Ordered = []string{dest}, ordered
		v, err := schema.Encode(n)
		if err != nil {
			s.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: s.topics.Notifications, Key: event.RecordKey(tenant, n.OrderingKey), Value: v})
	}
	for i := 0; i < len(recs); i += 500 {
		if err := s.cl.ProduceSync(s.t.Context(), recs[i:min(i+500, len(recs))]...).FirstErr(); err != nil {
			s.t.Fatal(err)
		}
	}
}

// senderConfig is the sender's configuration for this stack, with a
// test-scaled schedule.
func (s *stack) senderConfig(schedule string) eventbridgesender.Config {
	s.t.Helper()
	var c eventbridgesender.Config
	if err := envconfig.Defaults(&c); err != nil {
		s.t.Fatal(err)
	}
	c.Kafka, c.Registry.URL, c.HTTPAddr, c.Logger = s.kafka, s.registry.URL(), "127.0.0.1:0", s.log
	c.Group = s.kafka.TopicPrefix + "eventbridge-sender"
	c.Delivery.RetrySchedule = schedule
	c.Delivery.CommitInterval = 100 * time.Millisecond
	return c
}

// runSender runs the sender in this process until the test ends.
func (s *stack) runSender(c eventbridgesender.Config) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	snd, err := eventbridgesender.New(ctx, c)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- snd.Run(ctx) }()
	s.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			s.t.Errorf("sender stopped with %v", err)
		}
		snd.Close()
	})
}

// deadLetters reads the channel's dead-letter topic until want records
// are read or the deadline passes.
func (s *stack) deadLetters(want int, deadline time.Duration) []*kgo.Record {
	s.t.Helper()
	opts, _ := kafka.ClientOptions(s.kafka, "test-dlq", s.log)
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(s.topics.DLQ(eventbridgesender.Channel)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		s.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(s.t.Context(), deadline)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// decode reads a notification record's value.
func (s *stack) decode(value []byte) *notification.Notification {
	s.t.Helper()
	var n notification.Notification
	if _, err := s.reg.Decode(s.t.Context(), value, &n); err != nil {
		s.t.Fatal(err)
	}
	return &n
}

// header returns a record header's value.
func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
