package subscription_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/subscription"
)

func newTopic(t *testing.T) (seeds []string, topic string) {
	t.Helper()
	seeds, topic = kafkatest.Fake(t), "herald.subscriptions"
	kafkatest.Compacted(t, seeds, topic, 3)
	return seeds, topic
}

func openStore(t *testing.T, seeds []string, topic string) *subscription.Store {
	t.Helper()
	s, err := subscription.Open([]kgo.Opt{kgo.SeedBrokers(seeds...)}, topic, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	})
	if err := s.WaitCaughtUp(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, s *subscription.Store, typ, id, name, url string) {
	t.Helper()
	if _, err := s.Put(ctxTimeout(t), subscription.Subscription{Tenant: "acme", ResourceType: typ, ResourceID: id, Notification: name, WebhookURL: url}); err != nil {
		t.Fatal(err)
	}
}

func urls(subs []subscription.Subscription) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.Notification+" "+s.WebhookURL)
	}
	return out
}

func TestWritesAreReadableAsSoonAsTheyReturn(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	sim := subscription.Resource{Tenant: "acme", Type: "Sim", ID: "8944474600000109251"}

	put(t, s, "Sim", sim.ID, "USAGE_THRESHOLD", "https://a.example/1")
	put(t, s, "Sim", sim.ID, "USAGE_THRESHOLD", "https://a.example/2")
	put(t, s, "SIM", sim.ID, "SUBSCRIPTION_END", "https://a.example/1")
	if got, want := urls(s.List(sim)), []string{"SUBSCRIPTION_END https://a.example/1", "USAGE_THRESHOLD https://a.example/2"}; !slices.Equal(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if err := s.Delete(ctxTimeout(t), sim, "USAGE_THRESHOLD"); err != nil {
		t.Fatal(err)
	}
	if got, want := urls(s.List(sim)), []string{"SUBSCRIPTION_END https://a.example/1"}; !slices.Equal(got, want) {
		t.Errorf("List after Delete = %q, want %q", got, want)
	}
	if err := s.Delete(ctxTimeout(t), sim, "USAGE_THRESHOLD"); !errors.Is(err, subscription.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}

	// A view opened later replays the topic to the same state.
	later := openStore(t, seeds, topic)
	if got, want := urls(later.List(sim)), []string{"SUBSCRIPTION_END https://a.example/1"}; !slices.Equal(got, want) {
		t.Errorf("a later view lists %q, want %q", got, want)
	}
	if later.Len() != 1 {
		t.Errorf("a later view holds %d subscriptions, want 1", later.Len())
	}
}

func TestDestinationsAddTheSubscriptionsOfTheEntityAndItsSim(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	put(t, s, "Balance", "bal-1", "USAGE_THRESHOLD", "https://balance.example/")
	put(t, s, "Sim", "8944", "USAGE_THRESHOLD", "https://sim.example/")
	put(t, s, "Sim", "8944", "SUBSCRIPTION_END", "https://sim.example/end")
	put(t, s, "Sim", "8955", "USAGE_THRESHOLD", "https://balance.example/")

	str := func(v string) *string { return &v }
	rule := []string{"dst_ops"}
	tests := []struct {
		name string
		n    notification.Notification
		want []string
	}{
		{"entity and device", notification.Notification{TenantID: "acme", Name: "USAGE_THRESHOLD", Destinations: rule,
			Event: notification.EventRef{EntityType: "Balance", EntityID: "bal-1", DeviceID: str("8944")}},
			[]string{"dst_ops", "sub:native:https://balance.example/", "sub:native:https://sim.example/"}},
		{"the SIM itself, once", notification.Notification{TenantID: "acme", Name: "SUBSCRIPTION_END", Destinations: rule,
			Event: notification.EventRef{EntityType: "Sim", EntityID: "8944", DeviceID: str("8944")}},
			[]string{"dst_ops", "sub:native:https://sim.example/end"}},
		{"one URL for two resources, once", notification.Notification{TenantID: "acme", Name: "USAGE_THRESHOLD", Destinations: rule,
			Event: notification.EventRef{EntityType: "Balance", EntityID: "bal-1", DeviceID: str("8955")}},
			[]string{"dst_ops", "sub:native:https://balance.example/"}},
		{"another name", notification.Notification{TenantID: "acme", Name: "PlanExpired", Destinations: rule,
			Event: notification.EventRef{EntityType: "Balance", EntityID: "bal-1", DeviceID: str("8944")}},
			[]string{"dst_ops"}},
		{"another tenant", notification.Notification{TenantID: "globex", Name: "USAGE_THRESHOLD", Destinations: rule,
			Event: notification.EventRef{EntityType: "Balance", EntityID: "bal-1", DeviceID: str("8944")}},
			[]string{"dst_ops"}},
		{"no rule destination", notification.Notification{TenantID: "acme", Name: "USAGE_THRESHOLD", Destinations: []string{},
			Event: notification.EventRef{EntityType: "Sim", EntityID: "8944"}},
			[]string{"sub:native:https://sim.example/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Destinations(&tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("Destinations = %q, want %q", got, tt.want)
			}
		})
	}

	// Two notifications of one rule share its destinations slice, which
	// may have room to spare: neither may write into the other's list.
	shared := append(make([]string, 0, 4), "dst_ops")
	first := s.Destinations(&notification.Notification{TenantID: "acme", Name: "USAGE_THRESHOLD", Destinations: shared,
		Event: notification.EventRef{EntityType: "Sim", EntityID: "8944"}})
	s.Destinations(&notification.Notification{TenantID: "acme", Name: "USAGE_THRESHOLD", Destinations: shared,
		Event: notification.EventRef{EntityType: "Balance", EntityID: "bal-1"}})
	if want := []string{"dst_ops", "sub:native:https://sim.example/"}; !slices.Equal(first, want) {
		t.Errorf("first notification's destinations became %q, want %q", first, want)
	}
}

// TestMalformedRecordsAreSkipped pins that a subscription record the view
// cannot read is the record's fault: it is skipped, and the view still
// applies what follows it and catches up.
func TestMalformedRecordsAreSkipped(t *testing.T) {
	seeds, topic := newTopic(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bad := []*kgo.Record{
		{Topic: topic, Key: []byte("acme/Sim/1/USAGE_THRESHOLD"), Value: []byte("not JSON")},
		{Topic: topic, Key: []byte("acme/Sim/2/USAGE_THRESHOLD"), Value: []byte(`{"webhookUrl": ""}`)},
		{Topic: topic, Key: []byte("no-slashes"), Value: []byte(`{"webhookUrl": "https://a.example/x"}`)},
		{Topic: topic, Key: []byte("acme/Sim/3/USAGE_THRESHOLD"), Value: []byte("\xff\xfe")},
	}
	if err := cl.ProduceSync(t.Context(), bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, seeds, topic)
	put(t, s, "Sim", "4", "USAGE_THRESHOLD", "https://a.example/4")
	if s.Len() != 1 {
		t.Errorf("view holds %d subscriptions, want only the good one", s.Len())
	}
	// A malformed last record must not keep a later view from catching up.
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Key: []byte("acme/Sim/5/X"), Value: []byte("{")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if late := openStore(t, seeds, topic); late.Len() != 1 {
		t.Errorf("a later view holds %d subscriptions, want 1", late.Len())
	}
}
