package ruleevaluator

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

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
)

// BenchmarkEvaluate measures one Balance event, from its wire-format bytes
// through the registry's cached schema, generic Avro decode, the index and
// every rule that watches it. None of the rules fires, so the figure is the
// cost of judging an event, not of writing a notification. rules=0 is the
// baseline of the same run: the event decoded and looked up, no rule run.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{0, 1, 10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			e, rec := benchEvaluator(b, n)
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				out, err := e.evaluate(ctx, rec)
				if err != nil || len(out) != 0 {
					b.Fatalf("evaluate = %d records, %v", len(out), err)
				}
			}
		})
	}
}

func benchEvaluator(b *testing.B, n int) (*Evaluator, *kgo.Record) {
	b.Helper()
	fake := srfake.New()
	b.Cleanup(fake.Close)
	src, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		b.Fatal(err)
	}
	topics := kafka.Config{TopicPrefix: "bench."}.Topics()
	base := &service.Base{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Topics: topics,
		Registry: havro.NewRegistry(src, time.Hour), Config: followedStore(b, topics.Config, "acme"),
	}
	if err := service.RegisterSchemas(b.Context(), base.Registry, topics); err != nil {
		b.Fatal(err)
	}
	e := &Evaluator{base: base, compiler: rules.NewCompiler(rules.DefaultLimits), index: rules.NewIndex(), metrics: newEvaluatorMetrics(noop.NewMeterProvider().Meter(""))}
	entities, err := base.Entities(b.Context(), []string{"Balance"}, false)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		// Thresholds from 1% to 20% of the total: the event (60% → 50%)
		// crosses none of them.
		spec := configstore.Rule{
			Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", float64(i%20+1)/100, float64(i%20+1)/100),
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		}
		r, err := e.compiler.Compile("acme", fmt.Sprintf("r%d", i), spec, entities)
		if err != nil {
			b.Fatal(err)
		}
		e.index.Put(r)
	}
	acct := "acct-1"
	img := func(rem float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - rem, "remaining": rem}
	}
	key, value, err := event.Encode(b.Context(), base.Registry, topics.Events, "acme", &event.Event{
		EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE", AccountID: &acct, Old: img(600), New: img(500),
	}, "")
	if err != nil {
		b.Fatal(err)
	}
	return e, &kgo.Record{Topic: topics.Events, Key: key, Value: value}
}
