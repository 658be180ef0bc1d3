package ruleevaluator

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

// TestRuleWrittenBeforeAnEventAppliesWhileTheViewLags holds the
// evaluator's view of the configuration behind a rule that was written
// before an event was accepted, until the evaluator has started on the
// event. The evaluator judges while it checks that its views are caught
// up; it must not commit a judgement made without the rule, so the event
// still yields the rule's notification, once.
func TestRuleWrittenBeforeAnEventAppliesWhileTheViewLags(t *testing.T) {
	c, cfg := controlledFakes(t, 1)
	topics := cfg.Kafka.Topics()
	// Counts the end offsets of the config topic asked for once armed:
	// the evaluator asks when it starts on a poll's events.
	var armed atomic.Bool
	var asked atomic.Int32
	c.ControlKey(int16(kmsg.ListOffsets), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range kreq.(*kmsg.ListOffsetsRequest).Topics {
			if armed.Load() && rt.Topic == topics.Config {
				asked.Add(1)
			}
		}
		return nil, nil, false
	})

	e, err := New(t.Context(), Config{Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 100})
	if err != nil {
		t.Fatal(err)
	}
	// The view stops at the "blocker" tenant until the gate opens.
	blocked, gate := make(chan struct{}), make(chan struct{})
	e.base.Config.OnApply(func(doc configstore.Document, _ bool) {
		if doc.Kind == configstore.KindTenant && doc.ID == "blocker" {
			close(blocked)
			<-gate
		}
	})
	servicetest.Run(t, e)
	ctx := t.Context()
	put := func(tenant, kind, id string, spec any) {
		doc, err := configstore.NewDocument(tenant, kind, id, spec)
		if err == nil {
			_, err = e.base.Config.Put(ctx, doc, 0)
		}
		if err != nil && ctx.Err() == nil {
			t.Errorf("put %s %s: %v", kind, id, err)
		}
	}
	put(configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "acme"})
	admin := notificationReader(t, cfg)
	before := endOffset(t, kadm.NewClient(admin), topics.Config)

	go put(configstore.OperatorTenant, configstore.KindTenant, "blocker", configstore.Tenant{Name: "blocker"})
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the view never reached the blocker")
	}
	go put("acme", configstore.KindRule, "low", configstore.Rule{
		Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When: "new.remaining < old.remaining", Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
	})
	// The rule is in the topic (behind the blocker, which the view has not
	// applied) before the event is accepted.
	for endOffset(t, kadm.NewClient(admin), topics.Config) < before+2 {
		time.Sleep(20 * time.Millisecond)
	}

	acct := "acct-1"
	img := func(rem float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - rem, "remaining": rem}
	}
	key, value, err := event.Encode(ctx, e.base.Registry, topics.Events, "acme", &event.Event{
		EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE", AccountID: &acct, Old: img(600), New: img(500),
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if err := admin.ProduceSync(ctx, &kgo.Record{Topic: topics.Events, Key: key, Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for asked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the evaluator never checked the config topic's end for the event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(gate)
	collectExactlyOnce(t, e, admin, 1, 0)
}

// endOffset returns the end offset of topic's partition 0.
func endOffset(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	o, ok := ends.Lookup(topic, 0)
	if err != nil || !ok {
		t.Fatalf("end offset of %s: %v", topic, err)
	}
	return o.Offset
}
