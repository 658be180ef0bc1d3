package eventbridgesender_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

// stack is what an integration test runs the sender against: its own
// topics on the real broker, a registry, the configuration view, and a
// producer of notifications.
type stack struct {
	t *testing.T
	*servicetest.Stack
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return &stack{t: t, Stack: servicetest.NewStack(t)}
}

// destination stores an EventBridge destination.
func (s *stack) destination(id string, d configstore.Destination) {
	s.t.Helper()
	servicetest.Put(s.t, s.Store, tenant, configstore.KindDestination, id, d)
}

// produce writes notes to the notifications topic, in order, for dest.
func (s *stack) produce(dest string, ordered bool, notes []*notification.Notification) {
	s.t.Helper()
	schema, err := s.Schemas.Latest(s.t.Context(), s.Topics.Notifications+"-herald.Notification")
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
		recs = append(recs, &kgo.Record{Topic: s.Topics.Notifications, Key: event.RecordKey(tenant, n.OrderingKey), Value: v})
	}
	for i := 0; i < len(recs); i += 500 {
		if err := s.Client.ProduceSync(s.t.Context(), recs[i:min(i+500, len(recs))]...).FirstErr(); err != nil {
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
	c.Kafka, c.Registry.URL, c.HTTPAddr, c.Logger = s.Kafka, s.Registry.URL(), "127.0.0.1:0", s.Log
	c.Group = s.Kafka.TopicPrefix + "eventbridge-sender"
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
	opts, _ := kafka.ClientOptions(s.Kafka, "test-dlq", s.Log)
	return servicetest.Read(s.t, opts, s.Topics.DLQ(eventbridgesender.Channel), want, deadline)
}

// decode reads a notification record's value.
func (s *stack) decode(value []byte) *notification.Notification {
	s.t.Helper()
	var n notification.Notification
	if _, err := s.Schemas.Decode(s.t.Context(), value, &n); err != nil {
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
