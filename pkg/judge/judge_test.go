package judge_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/pkg/service"
)

// fixture is a judge of tenant acme's events over a registry of the
// test's own, with the rules the test adds.
type fixture struct {
	base     *service.Base
	compiler *rules.Compiler
	index    *rules.Index
	judge    *judge.Judge
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	fake := srfake.New()
	tb.Cleanup(fake.Close)
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		tb.Fatal(err)
	}
	base := &service.Base{Registry: havro.NewRegistry(cl, time.Hour), Topics: kafka.Config{TopicPrefix: "t."}.Topics()}
	if err := service.RegisterSchemas(tb.Context(), base.Registry, base.Topics); err != nil {
		tb.Fatal(err)
	}
	f := &fixture{base: base, compiler: rules.NewCompiler(rules.DefaultLimits), index: rules.NewIndex()}
	f.judge = &judge.Judge{
		Registry: base.Registry, NotificationSubject: base.NotificationSubject(),
		Rules: f.index.Watching,
		Now:   func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) },
	}
	return f
}

// rule indexes a rule of acme on Balance updates with condition when.
func (f *fixture) rule(tb testing.TB, id, when string) {
	tb.Helper()
	entities, err := f.base.Entities(tb.Context(), []string{"Balance"}, false)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := f.compiler.Compile("acme", id, configstore.Rule{
		Name: id, On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When: when, Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
	}, entities)
	if err != nil {
		tb.Fatal(err)
	}
	f.index.Put(r)
}

// balance returns acme's Balance update of acct-1 from 600 to 500 MB left
// of 1000, in the wire format.
func (f *fixture) balance(tb testing.TB) []byte {
	tb.Helper()
	acct := "acct-1"
	img := func(rem float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - rem, "remaining": rem}
	}
	_, value, err := event.Encode(tb.Context(), f.base.Registry, f.base.Topics.Events, "acme", &event.Event{
		EventID: "ev-1", EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE", AccountID: &acct, Old: img(600), New: img(500),
	}, "")
	if err != nil {
		tb.Fatal(err)
	}
	return value
}

// fired returns the ids of the rules that fired on value.
func (f *fixture) fired(tb testing.TB, value []byte) map[string]bool {
	tb.Helper()
	v, err := f.judge.Event(tb.Context(), value)
	if err != nil {
		tb.Fatal(err)
	}
	for _, fl := range v.Failures {
		tb.Errorf("rule %s failed: %s: %v", fl.RuleID, fl.Reason, fl.Err)
	}
	out := map[string]bool{}
	for _, n := range v.Notifications {
		out[n.Notification.RuleID] = true
	}
	return out
}

// conditions on the balance event, and whether each fires on it.
var conditions = []struct {
	when string
	want bool
}{
	{"new.remaining < old.remaining", true},
	{"new.remaining < new.total * 0.55 && old.remaining >= old.total * 0.55", true},
	{"crossedBelow(old.remaining, new.remaining, 550)", true},
	{"new.unit == 'MB' && new.id == 'bal-1'", true},
	{"has(new.planId)", false},
	{"new.tiers.size() == 0", true},
	{"new != old", true},
	{"old == null", false},
	{"isnull(old.planId) && !isnull(new)", true},
	{"event.accountId == 'acct-1' && event.operation == 'UPDATE' && event.id == 'ev-1'", true},
	{"new.remaining > 600.0", false},
}

// TestRulesSeeTheFieldsTheyRead pins that a rule judges an event the same
// whichever rules it shares the event with, though the judge reads only
// the fields the event's rules read.
func TestRulesSeeTheFieldsTheyRead(t *testing.T) {
	for i, c := range conditions {
		t.Run(c.when, func(t *testing.T) {
			f := newFixture(t)
			f.rule(t, fmt.Sprint(i), c.when)
			if got := f.fired(t, f.balance(t))[fmt.Sprint(i)]; got != c.want {
				t.Errorf("fired = %v, want %v", got, c.want)
			}
		})
	}
	t.Run("all together", func(t *testing.T) {
		f := newFixture(t)
		for i, c := range conditions {
			f.rule(t, fmt.Sprint(i), c.when)
		}
		got := f.fired(t, f.balance(t))
		for i, c := range conditions {
			if got[fmt.Sprint(i)] != c.want {
				t.Errorf("%s: fired = %v, want %v", c.when, got[fmt.Sprint(i)], c.want)
			}
		}
	})
}

// TestNotificationCarriesTheWholeImages pins that each notification of an
// event holds the entity's images whole, though its rule read one field.
func TestNotificationCarriesTheWholeImages(t *testing.T) {
	f := newFixture(t)
	f.rule(t, "r", "new.remaining < old.remaining")
	f.rule(t, "s", "new.used > old.used")
	v, err := f.judge.Event(t.Context(), f.balance(t))
	if err != nil || len(v.Notifications) != 2 {
		t.Fatalf("Event = %v, %v; want two notifications", v, err)
	}
	for _, e := range v.Notifications {
		checkImages(t, e.Notification)
	}
}

func checkImages(t *testing.T, n *notification.Notification) {
	t.Helper()
	for name, img := range map[string]*string{"old": n.Old, "new": n.New} {
		var m map[string]any
		if img == nil || json.Unmarshal([]byte(*img), &m) != nil {
			t.Fatalf("%s image = %v, want JSON", name, img)
		}
		for _, field := range []string{"id", "accountId", "unit", "total", "used", "remaining", "planId", "tiers"} {
			if _, ok := m[field]; !ok {
				t.Errorf("%s image %s lacks %s", name, *img, field)
			}
		}
	}
	want := notification.EventRef{ID: "ev-1", EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE"}
	if got := n.Event; got.ID != want.ID || got.EntityType != want.EntityType || got.EntityID != want.EntityID ||
		got.Operation != want.Operation || got.AccountID == nil || *got.AccountID != "acct-1" || got.OccurredAt.IsZero() {
		t.Errorf("event = %+v, want %+v with account acct-1 and a time", got, want)
	}
}

// TestAnEnvelopeOfOtherTypesIsStillJudged pins that an upstream entity type
// whose envelope spells a field otherwise than Herald's (a plain long for
// the time, a string for the operation) is judged all the same.
func TestAnEnvelopeOfOtherTypesIsStillJudged(t *testing.T) {
	f := newFixture(t)
	text := `{"type": "record", "name": "Meter", "namespace": "upstream", "fields": [
		{"name": "eventId", "type": "string"}, {"name": "tenantId", "type": "string"},
		{"name": "entityType", "type": "string"}, {"name": "entityId", "type": "string"},
		{"name": "operation", "type": "string"}, {"name": "occurredAt", "type": "long"},
		{"name": "old", "type": ["null", {"type": "record", "name": "M", "fields": [{"name": "reading", "type": "long"}]}]},
		{"name": "new", "type": ["null", "M"]}]}`
	ctx := t.Context()
	subject := f.base.EventSubject("Meter")
	if err := f.base.Registry.Register(ctx, subject, []string{text}, sr.CompatBackward); err != nil {
		t.Fatal(err)
	}
	schema, err := f.base.Registry.Latest(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	entity, err := rules.EntityFromSchemas("Meter", []*avro.Schema{schema.Schema})
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.compiler.Compile("acme", "m", configstore.Rule{
		Name: "m", On: configstore.RuleOn{EntityTypes: []string{"Meter"}}, When: "new.reading > old.reading",
	}, map[string]rules.Entity{"Meter": entity})
	if err != nil {
		t.Fatal(err)
	}
	f.index.Put(r)
	value, err := schema.Encode(map[string]any{"eventId": "e", "tenantId": "acme", "entityType": "Meter", "entityId": "m-1",
		"operation": "UPDATE", "occurredAt": int64(1), "old": map[string]any{"reading": int64(1)}, "new": map[string]any{"reading": int64(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.fired(t, value)["m"] {
		t.Error("the rule did not fire")
	}
}

// TestRulesReadEveryKindOfField pins that a rule reads each kind of field
// an entity may have as the whole image would give it.
func TestRulesReadEveryKindOfField(t *testing.T) {
	f := newFixture(t)
	text := `{"type": "record", "name": "Gauge", "namespace": "upstream", "fields": [
		{"name": "eventId", "type": "string"}, {"name": "tenantId", "type": "string"},
		{"name": "entityType", "type": "string"}, {"name": "entityId", "type": "string"},
		{"name": "operation", "type": {"type": "enum", "name": "Op", "symbols": ["CREATE", "UPDATE", "DELETE"]}},
		{"name": "occurredAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
		{"name": "old", "type": ["null", {"type": "record", "name": "G", "fields": [
			{"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
			{"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "s", "type": "string"},
			{"name": "e", "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"]}},
			{"name": "ni", "type": ["null", "int"]}, {"name": "ns", "type": ["null", "string"]},
			{"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
			{"name": "tags", "type": {"type": "array", "items": "string"}}]}]},
		{"name": "new", "type": ["null", "G"]}]}`
	ctx := t.Context()
	subject := f.base.EventSubject("Gauge")
	if err := f.base.Registry.Register(ctx, subject, []string{text}, sr.CompatBackward); err != nil {
		t.Fatal(err)
	}
	schema, err := f.base.Registry.Latest(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	entity, err := rules.EntityFromSchemas("Gauge", []*avro.Schema{schema.Schema})
	if err != nil {
		t.Fatal(err)
	}
	when := "new.b && new.i == 3 && new.l > 4000000000 && new.f == 1.5 && new.d < old.d && new.s == 's' && new.e == 'HIGH' && " +
		"new.ni == 7 && old.ni == null && new.ns == null && new.at > old.at && new.tags[1] == 'y'"
	r, err := f.compiler.Compile("acme", "g", configstore.Rule{Name: "g", On: configstore.RuleOn{EntityTypes: []string{"Gauge"}}, When: when},
		map[string]rules.Entity{"Gauge": entity})
	if err != nil {
		t.Fatal(err)
	}
	f.index.Put(r)
	img := func(d float64, ni any, at time.Time) map[string]any {
		return map[string]any{"b": true, "i": int32(3), "l": int64(5000000000), "f": float32(1.5), "d": d, "s": "s", "e": "HIGH",
			"ni": ni, "ns": nil, "at": at, "tags": []any{"x", "y"}}
	}
	now := time.Now()
	value, err := schema.Encode(map[string]any{"eventId": "e", "tenantId": "acme", "entityType": "Gauge", "entityId": "g-1",
		"operation": "UPDATE", "occurredAt": now, "old": img(2, nil, now.Add(-time.Hour)), "new": img(1, int32(7), now)})
	if err != nil {
		t.Fatal(err)
	}
	if !f.fired(t, value)["g"] {
		t.Errorf("%s did not fire", when)
	}
}

// TestRulesOnOneEventEachHaveTheirOwnCostBudget pins that rules sharing
// an event do not share the runtime cost limit: each may spend up to it.
func TestRulesOnOneEventEachHaveTheirOwnCostBudget(t *testing.T) {
	f := newFixture(t)
	// 10^4 iterations: within the limit once, over it twice. Its cost is
	// counted as it runs, for the iterations over the tiers might cost more.
	heavy := "new.tiers.all(x, [0,1,2,3,4,5,6,7,8,9].all(y, true)) && " +
		"[0,1,2,3,4,5,6,7,8,9].all(a, [0,1,2,3,4,5,6,7,8,9].all(b, [0,1,2,3,4,5,6,7,8,9].all(c, [0,1,2,3,4,5,6,7,8,9].all(d, new.remaining > 0.0))))"
	f.rule(t, "a", heavy)
	f.rule(t, "b", heavy)
	if got := f.fired(t, f.balance(t)); !got["a"] || !got["b"] {
		t.Errorf("fired %v, want a and b", got)
	}
}

// TestJudgingAnEventAllocatesWithinItsBudget pins how many allocations an
// event costs: read and looked up with no rule watching it, judged by 10
// rules that do not fire, and judged by one that fires, its notification
// built and encoded.
func TestJudgingAnEventAllocatesWithinItsBudget(t *testing.T) {
	tests := []struct {
		name   string
		rules  []string
		budget float64
	}{
		{"no rule", nil, 3},
		{"10 rules, none fires", tenThresholds(), 10},
		{"one rule fires", []string{"new.remaining < old.remaining"}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for i, when := range tt.rules {
				f.rule(t, fmt.Sprint(i), when)
			}
			value, ctx := f.balance(t), t.Context()
			allocs := testing.AllocsPerRun(200, func() {
				if _, err := f.judge.Event(ctx, value); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > tt.budget+raceAllocs {
				t.Errorf("%.0f allocations, over the budget of %.0f", allocs, tt.budget+raceAllocs)
			}
		})
	}
}

// tenThresholds are ten threshold rules from 1% to 10% of the total, none
// of which the balance event crosses.
func tenThresholds() []string {
	out := make([]string, 10)
	for i := range out {
		pct := float64(i+1) / 100
		out[i] = fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", pct, pct)
	}
	return out
}

// TestEachEventIsReadOnItsOwn judges events that alternate between an
// update, with both images, and a create, whose old image is null, with
// rules that read only some fields: each is judged on its own images,
// never on what the event before it left behind.
func TestEachEventIsReadOnItsOwn(t *testing.T) {
	f := newFixture(t)
	entities, err := f.base.Entities(t.Context(), []string{"Balance"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for id, when := range map[string]string{"no-old": "old == null", "low": "new.remaining < 550.0"} {
		r, err := f.compiler.Compile("acme", id, configstore.Rule{
			Name: id, On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"CREATE", "UPDATE"}},
			When: when, Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		}, entities)
		if err != nil {
			t.Fatal(err)
		}
		f.index.Put(r)
	}
	acct := "acct-1"
	encode := func(op string, old map[string]any, remaining float64) []byte {
		_, value, err := event.Encode(t.Context(), f.base.Registry, f.base.Topics.Events, "acme", &event.Event{
			EventID: "ev", EntityType: "Balance", EntityID: "bal-1", Operation: op, AccountID: &acct, Old: old,
			New: map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - remaining, "remaining": remaining},
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		return value
	}
	withOld := encode("UPDATE", map[string]any{"id": "bal-1", "accountId": acct, "unit": "MB", "total": 1000.0, "used": 400.0, "remaining": 600.0}, 500)
	withoutOld := encode("CREATE", nil, 600)
	for i := range 6 {
		got := f.fired(t, withOld)
		if got["no-old"] || !got["low"] {
			t.Fatalf("event %d, with an old image and 500 left: fired %v, want low alone", i, got)
		}
		got = f.fired(t, withoutOld)
		if !got["no-old"] || got["low"] {
			t.Fatalf("event %d, a create with 600 left: fired %v, want no-old alone", i, got)
		}
	}
}
