package ruleevaluator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/metric/noop"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/pkg/subscription"
)

// followedStore returns a configuration view, on a kfake cluster of the
// test's own, that follows its topic and holds the given tenants.
func followedStore(tb testing.TB, topic string, tenants ...string) *configstore.Store {
	tb.Helper()
	cfg := servicetest.Fakes(tb, 1)
	opts := []kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...)}
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(tb.Context(), 1, -1, nil, topic); err != nil {
		tb.Fatal(err)
	}
	store, err := configstore.Open(opts, topic, cfg.Logger)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = store.Run(ctx) }()
	tb.Cleanup(func() { stop(); <-done; store.Close() })
	wait, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	for _, tenant := range tenants {
		doc, err := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: tenant})
		if err == nil {
			_, err = store.Put(wait, doc, 0)
		}
		if err != nil {
			tb.Fatalf("store tenant %s: %v", tenant, err)
		}
	}
	return store
}

// testEvaluator returns an evaluator on fakes of the test's own, with
// tenant acme stored, a rule of acme on Balance updates indexed for each
// condition, and the record of one Balance update of acme (remaining 600 →
// 500 of a total of 1000).
func testEvaluator(tb testing.TB, conditions ...string) (*Evaluator, *kgo.Record) {
	tb.Helper()
	ctx := tb.Context()
	fake := srfake.New()
	tb.Cleanup(fake.Close)
	src, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		tb.Fatal(err)
	}
	topics := kafka.Config{TopicPrefix: "t."}.Topics()
	base := &service.Base{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Topics: topics,
		Registry: havro.NewRegistry(src, time.Hour), Config: followedStore(tb, topics.Config, "acme"),
	}
	if err := service.RegisterSchemas(ctx, base.Registry, topics); err != nil {
		tb.Fatal(err)
	}
	// No subscriptions: an empty view, never followed.
	subs, err := subscription.Open(nil, topics.Subscriptions, base.Log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(subs.Close)
	e := &Evaluator{base: base, compiler: rules.NewCompiler(rules.DefaultLimits), index: rules.NewIndex(), subs: subs,
		metrics: newEvaluatorMetrics(noop.NewMeterProvider().Meter(""), func() int { return 0 }), now: time.Now}
	e.judge = e.newJudge()
	entities, err := base.Entities(ctx, []string{"Balance"}, false)
	if err != nil {
		tb.Fatal(err)
	}
	for i, when := range conditions {
		r, err := e.compiler.Compile("acme", fmt.Sprintf("r%d", i), configstore.Rule{
			Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         when,
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		}, entities)
		if err != nil {
			tb.Fatal(err)
		}
		e.index.Put(r)
	}
	acct := "acct-1"
	img := func(rem float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - rem, "remaining": rem}
	}
	key, value, err := event.Encode(ctx, base.Registry, topics.Events, "acme", &event.Event{
		EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE", AccountID: &acct, Old: img(600), New: img(500),
	}, "")
	if err != nil {
		tb.Fatal(err)
	}
	return e, &kgo.Record{Topic: topics.Events, Key: key, Value: value}
}

// TestDeletedTenantsRulesDoNotRun pins that once a tenant's document is
// gone, its events fire none of its rules, even those still indexed.
func TestDeletedTenantsRulesDoNotRun(t *testing.T) {
	e, rec := testEvaluator(t, "new.remaining < old.remaining")
	ctx, base := t.Context(), e.base
	if out, _, err := e.evaluate(ctx, rec); err != nil || len(out) != 1 || out[0].Topic != base.Topics.Notifications {
		t.Fatalf("while acme exists: evaluate = %d records, %v; want its notification", len(out), err)
	}
	if err := base.Config.Delete(ctx, configstore.OperatorTenant, configstore.KindTenant, "acme"); err != nil {
		t.Fatal(err)
	}
	if out, _, err := e.evaluate(ctx, rec); err != nil || len(out) != 0 {
		t.Fatalf("after acme was deleted: evaluate = %d records, %v; want none", len(out), err)
	}
}
