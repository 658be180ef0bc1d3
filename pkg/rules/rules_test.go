package rules_test

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/avro"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/schemas"
)

// lowBalance is the Balance example: fire when the remaining allowance
// drops below 20% of the total, once per crossing.
const lowBalance = "new.remaining < new.total * 0.2 && old.remaining >= old.total * 0.2"

func newEnv(t *testing.T) *rules.Compiler {
	t.Helper()
	return rules.NewCompiler(rules.DefaultLimits)
}

// spec returns a rule on Balance events with condition when.
func spec(when string) configstore.Rule {
	return configstore.Rule{
		Name: "low balance",
		On:   configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When: when,
	}
}

func compile(t *testing.T, env *rules.Compiler, s configstore.Rule) *rules.Rule {
	t.Helper()
	r, err := env.Compile("acme", "r-1", s, builtinEntities(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCompileRefusesABadExpressionWithItsPosition(t *testing.T) {
	env := newEnv(t)
	position := regexp.MustCompile(`\b\d+:\d+\b`)
	withField := func(name, expr string) configstore.Rule {
		s := spec("true")
		s.Notification.Fields = map[string]string{name: expr}
		return s
	}

	tests := []struct {
		name      string
		spec      configstore.Rule
		wantField string
	}{
		{"syntax error in the condition", spec("new.remaining <"), "when"},
		{"undeclared variable", spec("balance.remaining < 10"), "when"},
		{"wrong argument types", spec("new.remaining < 'ten' + 1"), "when"},
		{"syntax error on a later line", spec("new.remaining < 10 &&\n  old.remaining >="), "when"},
		{"syntax error in a notification field", withField("percent", "new.remaining / * 100"), "notification.fields.percent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile("acme", "r-1", tt.spec, builtinEntities(t))
			var ce *rules.CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error = %v (%T), want a *CompileError", err, err)
			}
			if ce.Field != tt.wantField {
				t.Errorf("Field = %q, want %q", ce.Field, tt.wantField)
			}
			if !position.MatchString(ce.Error()) {
				t.Errorf("message has no line:column position: %s", ce.Error())
			}
		})
	}
}

func TestCompileRefusesAConditionThatIsNotBool(t *testing.T) {
	env := newEnv(t)
	for _, when := range []string{"new.total * 0.2", "'yes'", "1 + 2", "[true]"} {
		t.Run(when, func(t *testing.T) {
			_, err := env.Compile("acme", "r-1", spec(when), builtinEntities(t))
			var ce *rules.CompileError
			if !errors.As(err, &ce) || ce.Field != "when" || !strings.Contains(ce.Message, "bool") {
				t.Errorf("Compile(%q) error = %v, want a *CompileError on when saying it must be a bool", when, err)
			}
		})
	}
}

func TestCompileRefusesAnIncompleteRule(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name     string
		on       configstore.RuleOn
		when     string
		wantText string
	}{
		{"unknown operation", configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPSERT"}}, "true", "UPSERT"},
		{"lower-case operation", configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"update"}}, "true", "update"},
		{"no entity type", configstore.RuleOn{Operations: []string{"UPDATE"}}, "true", "entityTypes"},
		{"empty condition", configstore.RuleOn{EntityTypes: []string{"Balance"}}, "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Compile("acme", "r-1", configstore.Rule{On: tt.on, When: tt.when}, builtinEntities(t))
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Compile error = %v, want one mentioning %q", err, tt.wantText)
			}
		})
	}
}

func TestLowBalanceRuleFiresOncePerCrossing(t *testing.T) {
	r := compile(t, newEnv(t), spec(lowBalance))
	bal := func(remaining, total float64) map[string]any {
		return map[string]any{"id": "bal-1", "remaining": remaining, "total": total, "used": total - remaining}
	}
	tests := []struct {
		name     string
		old, new map[string]any
		want     bool
	}{
		{"drops from 50% to 10%", bal(500, 1000), bal(100, 1000), true},
		{"drops from exactly 20% to just below", bal(200, 1000), bal(199.9, 1000), true},
		{"drops to exactly 20% is not below", bal(500, 1000), bal(200, 1000), false},
		{"stays above", bal(900, 1000), bal(800, 1000), false},
		{"already below drops further", bal(150, 1000), bal(50, 1000), false},
		{"goes back up above (re-arms, no fire)", bal(100, 1000), bal(900, 1000), false},
		{"a top-up raises the total so the share crosses", bal(300, 1000), bal(300, 2000), true},
		{"unchanged below", bal(10, 1000), bal(10, 1000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := r.Evaluate("Balance", &rules.Input{Old: tt.old, New: tt.new, Event: map[string]any{"operation": "UPDATE"}})
			fired := res.Fired
			if err != nil {
				t.Fatal(err)
			}
			if fired != tt.want {
				t.Errorf("fired = %v, want %v", fired, tt.want)
			}
		})
	}
}

func TestMatchEvaluatesNotificationFields(t *testing.T) {
	occurred := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	in := rules.Input{
		Old:   map[string]any{"remaining": 500.0, "total": 1000.0, "planId": nil},
		New:   map[string]any{"remaining": 150.0, "total": 1000.0, "planId": nil, "unit": "MB"},
		Event: map[string]any{"id": "evt-1", "occurredAt": occurred, "accountId": "acc-1"},
	}
	tests := []struct {
		expr string
		want any
	}{
		{"new.remaining / new.total * 100.0", 15.0},
		{"new.unit", "MB"},
		{"event.accountId + '/' + new.unit", "acc-1/MB"},
		{"old.remaining - new.remaining", 350.0},
		{"new.remaining < 200.0", true},
		{"event.occurredAt", "2025-03-01T10:00:00Z"},
		{"new.planId", nil},
	}
	env := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			s := spec("true")
			s.Notification.Fields = map[string]string{"value": tt.expr}
			res, err := compile(t, env, s).Evaluate("Balance", &in)
			fired, fields := res.Fired, res.Fields
			if err != nil || !fired {
				t.Fatalf("Evaluate = %v, %v", fired, err)
			}
			if got := fields["value"]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("field = %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
		})
	}

	t.Run("not evaluated when the rule does not fire", func(t *testing.T) {
		s := spec("false")
		s.Notification.Fields = map[string]string{"value": "new.remaining"}
		res, err := compile(t, env, s).Evaluate("Balance", &in)
		fired, fields := res.Fired, res.Fields
		if err != nil || fired || fields != nil {
			t.Errorf("Match = %v, %v, %v; want false, nil, nil", fired, fields, err)
		}
	})
}

func TestMatchComparesTimestamps(t *testing.T) {
	plan := spec("new.expiresAt < event.occurredAt")
	plan.On.EntityTypes = []string{"Plan"}
	r := compile(t, newEnv(t), plan)
	occurred := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		expiresAt time.Time
		want      bool
	}{
		{"expired a day before the event", occurred.Add(-24 * time.Hour), true},
		{"expired a millisecond before", occurred.Add(-time.Millisecond), true},
		{"expires at the event", occurred, false},
		{"expires later", occurred.Add(time.Hour), false},
		{"same instant in another zone", occurred.In(time.FixedZone("CET", 3600)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := rules.Input{New: map[string]any{"expiresAt": tt.expiresAt}, Event: map[string]any{"occurredAt": occurred}}
			res, err := r.Evaluate("Plan", &in)
			fired := res.Fired
			if err != nil {
				t.Fatal(err)
			}
			if fired != tt.want {
				t.Errorf("fired = %v, want %v", fired, tt.want)
			}
		})
	}
}

// nestedAll returns a condition that iterates 10^depth times over lists it
// builds itself.
func nestedAll(depth int) string {
	expr := "true"
	for i := range depth {
		expr = fmt.Sprintf("[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].all(v%d, %s)", i, expr)
	}
	return expr
}

func TestEvaluationStopsAtTheCostLimit(t *testing.T) {
	env := newEnv(t)
	withField := func(expr string) configstore.Rule {
		s := spec("true")
		s.Notification.Fields = map[string]string{"heavy": expr}
		return s
	}
	tests := []struct {
		name     string
		spec     configstore.Rule
		wantCost bool
	}{
		{"condition of 10^4 iterations is within the limit", spec(nestedAll(4)), false},
		{"condition of 10^5 iterations exceeds it", spec(nestedAll(5)), true},
		{"field of 10^5 iterations exceeds it", withField("[" + nestedAll(5) + "]"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := compile(t, env, tt.spec)
			res, err := r.Evaluate("Balance", &rules.Input{Event: map[string]any{}})
			fired := res.Fired
			switch {
			case tt.wantCost && (err == nil || !strings.Contains(err.Error(), "cost limit")):
				t.Errorf("Match = %v, %v; want a cost limit error (limit %d)", fired, err, rules.DefaultLimits.MaxRuntimeCost)
			case !tt.wantCost && (err != nil || !fired):
				t.Errorf("Match = %v, %v; want it to fire", fired, err)
			}
		})
	}
}

func TestIndexMatchesByTenantEntityTypeAndOperation(t *testing.T) {
	env := newEnv(t)
	off := false
	rule := func(tenant, id string, on configstore.RuleOn, enabled *bool) *rules.Rule {
		r, err := env.Compile(tenant, id, configstore.Rule{On: on, When: "true", Enabled: enabled}, builtinEntities(t))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	balanceUpdates := configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}}
	allPlanOps := configstore.RuleOn{EntityTypes: []string{"Plan"}}
	simAndPlanDeletes := configstore.RuleOn{EntityTypes: []string{"Sim", "Plan"}, Operations: []string{"DELETE"}}

	type query struct{ tenant, entityType, operation string }
	tests := []struct {
		name  string
		setup func(ix *rules.Index)
		want  map[query][]string // rule ids, in any order
	}{
		{
			name:  "rule watches only its entity type and operation",
			setup: func(ix *rules.Index) { ix.Put(rule("acme", "low", balanceUpdates, nil)) },
			want: map[query][]string{
				{"acme", "Balance", "UPDATE"}: {"low"},
				{"acme", "Balance", "CREATE"}: nil,
				{"acme", "Plan", "UPDATE"}:    nil,
			},
		},
		{
			name:  "no operations means all of them",
			setup: func(ix *rules.Index) { ix.Put(rule("acme", "plans", allPlanOps, nil)) },
			want: map[query][]string{
				{"acme", "Plan", "CREATE"}:    {"plans"},
				{"acme", "Plan", "UPDATE"}:    {"plans"},
				{"acme", "Plan", "DELETE"}:    {"plans"},
				{"acme", "Balance", "UPDATE"}: nil,
			},
		},
		{
			name: "several entity types and rules on one key",
			setup: func(ix *rules.Index) {
				ix.Put(rule("acme", "plans", allPlanOps, nil))
				ix.Put(rule("acme", "gone", simAndPlanDeletes, nil))
			},
			want: map[query][]string{
				{"acme", "Plan", "DELETE"}: {"plans", "gone"},
				{"acme", "Sim", "DELETE"}:  {"gone"},
				{"acme", "Sim", "UPDATE"}:  nil,
			},
		},
		{
			name: "put replaces the rule with the same id",
			setup: func(ix *rules.Index) {
				ix.Put(rule("acme", "low", balanceUpdates, nil))
				ix.Put(rule("acme", "low", allPlanOps, nil))
			},
			want: map[query][]string{
				{"acme", "Balance", "UPDATE"}: nil,
				{"acme", "Plan", "UPDATE"}:    {"low"},
			},
		},
		{
			name: "remove drops the rule",
			setup: func(ix *rules.Index) {
				ix.Put(rule("acme", "plans", allPlanOps, nil))
				ix.Put(rule("acme", "gone", simAndPlanDeletes, nil))
				ix.Remove("acme", "gone")
				ix.Remove("acme", "never-there")
			},
			want: map[query][]string{
				{"acme", "Plan", "DELETE"}: {"plans"},
				{"acme", "Sim", "DELETE"}:  nil,
			},
		},
		{
			name:  "a disabled rule is not indexed",
			setup: func(ix *rules.Index) { ix.Put(rule("acme", "low", balanceUpdates, &off)) },
			want:  map[query][]string{{"acme", "Balance", "UPDATE"}: nil},
		},
		{
			name: "disabling an indexed rule takes it out",
			setup: func(ix *rules.Index) {
				ix.Put(rule("acme", "low", balanceUpdates, nil))
				ix.Put(rule("acme", "low", balanceUpdates, &off))
			},
			want: map[query][]string{{"acme", "Balance", "UPDATE"}: nil},
		},
		{
			name: "tenants never see each other's rules",
			setup: func(ix *rules.Index) {
				ix.Put(rule("acme", "low", balanceUpdates, nil))
				ix.Put(rule("globex", "low", balanceUpdates, nil))
				ix.Put(rule("globex", "plans", allPlanOps, nil))
				ix.Remove("globex", "low")
			},
			want: map[query][]string{
				{"acme", "Balance", "UPDATE"}:   {"low"},
				{"acme", "Plan", "UPDATE"}:      nil,
				{"globex", "Balance", "UPDATE"}: nil,
				{"globex", "Plan", "UPDATE"}:    {"plans"},
				{"initech", "Plan", "UPDATE"}:   nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := rules.NewIndex()
			tt.setup(ix)
			for q, want := range tt.want {
				var got []string
				for _, r := range ix.Watching(q.tenant, q.entityType, q.operation).Rules {
					if r.Tenant != q.tenant {
						t.Errorf("Watching%v returned tenant %s's rule %s", q, r.Tenant, r.ID)
					}
					got = append(got, r.ID)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("Match%v = %v, want %v", q, got, want)
				}
			}
		})
	}
}

// builtinEntities returns the built-in entity types as rules see them.
func builtinEntities(t testing.TB) map[string]rules.Entity {
	t.Helper()
	out := map[string]rules.Entity{}
	for _, rec := range schemas.Events() {
		var versions []*avro.Schema
		for _, text := range rec.Versions {
			s, err := avro.Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, s)
		}
		name := strings.TrimPrefix(rec.Name, schemas.EventNamespace+".")
		e, err := rules.EntityFromSchemas(name, versions)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = e
	}
	return out
}

type avroSchema = avro.Schema

func mustParse(text string) *avro.Schema { return avro.MustParse(text) }

// TestPreviousStateAndThresholdPerEvent pins what a rule whose previous
// state and threshold depend on the event puts in its notification, and
// that a rule giving them as plain values keeps them.
func TestPreviousStateAndThresholdPerEvent(t *testing.T) {
	env := newEnv(t)
	fixed := spec("true")
	th := 20.0
	fixed.Notification = configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low", PrevState: "ok", Threshold: &th}
	computed := spec("true")
	computed.Notification = configstore.RuleNotify{
		Name: "UnitAllowanceThreshold", State: "low",
		PrevStateExpr: `old.remaining > 0.0 ? "ok" : ""`,
		ThresholdExpr: `new.total == 0.0 ? dyn(null) : new.total / 5.0`,
	}
	bal := func(remaining, total float64) map[string]any {
		return map[string]any{"id": "bal-1", "remaining": remaining, "total": total, "used": total - remaining}
	}
	tests := []struct {
		name      string
		rule      configstore.Rule
		old, new  map[string]any
		prev      string
		threshold *float64
	}{
		{"fixed values", fixed, bal(500, 1000), bal(100, 1000), "ok", &th},
		{"computed values", computed, bal(500, 1000), bal(100, 1000), "ok", ptr(200)},
		{"computed nulls", computed, bal(0, 1000), bal(0, 0), "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := compile(t, env, tt.rule).Evaluate("Balance", &rules.Input{Old: tt.old, New: tt.new})
			if err != nil || !res.Fired {
				t.Fatalf("Evaluate = %+v, %v", res, err)
			}
			n := res.Notification
			if n.Name != tt.rule.Notification.Name || n.State != tt.rule.Notification.State {
				t.Errorf("notification %s/%s, want the rule's %s/%s", n.Name, n.State, tt.rule.Notification.Name, tt.rule.Notification.State)
			}
			if n.PrevState != tt.prev || !reflect.DeepEqual(n.Threshold, tt.threshold) {
				t.Errorf("prevState %q, threshold %v; want %q, %v", n.PrevState, deref(n.Threshold), tt.prev, deref(tt.threshold))
			}
			if n.PrevStateExpr != "" || n.ThresholdExpr != "" {
				t.Errorf("the event's notification keeps the expressions %q, %q", n.PrevStateExpr, n.ThresholdExpr)
			}
		})
	}
	if computed.Notification.PrevStateExpr == "" || computed.Notification.Threshold != nil {
		t.Error("evaluating changed the rule's own notification")
	}

	t.Run("a dyn expression that gives no string", func(t *testing.T) {
		s := spec("true")
		s.Notification = configstore.RuleNotify{Name: "N", State: "s", PrevStateExpr: "dyn(new.remaining)"}
		res, err := compile(t, env, s).Evaluate("Balance", &rules.Input{Old: bal(1, 2), New: bal(1, 2)})
		if err == nil || !strings.Contains(err.Error(), "not a string") || res.Fired {
			t.Errorf("Evaluate = %+v, %v; want an error saying it is not a string", res, err)
		}
	})
}

func TestCompileRefusesABadPreviousStateOrThreshold(t *testing.T) {
	env := newEnv(t)
	th := 20.0
	tests := []struct {
		name  string
		n     configstore.RuleNotify
		field string
		text  string
	}{
		{"a previous state that is not a string", configstore.RuleNotify{PrevStateExpr: "new.remaining"}, "notification.prevStateExpr", "string"},
		{"a threshold that is not a number", configstore.RuleNotify{ThresholdExpr: "new.unit"}, "notification.thresholdExpr", "double"},
		{"a previous state naming a field no version has", configstore.RuleNotify{PrevStateExpr: "old.stat"}, "notification.prevStateExpr", "undefined field"},
		{"both a previous state and its expression", configstore.RuleNotify{PrevState: "ok", PrevStateExpr: `"ok"`}, "notification.prevStateExpr", "not both"},
		{"both a threshold and its expression", configstore.RuleNotify{Threshold: &th, ThresholdExpr: "20"}, "notification.thresholdExpr", "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec("true")
			tt.n.Name, tt.n.State = "UnitAllowanceThreshold", "low"
			s.Notification = tt.n
			_, err := env.Compile("acme", "r-1", s, builtinEntities(t))
			var ce *rules.CompileError
			var se *rules.SpecError
			switch {
			case errors.As(err, &ce):
				if ce.Field != tt.field || !strings.Contains(ce.Message, tt.text) {
					t.Errorf("Compile = %v, want an error on %s saying %q", err, tt.field, tt.text)
				}
			case errors.As(err, &se):
				if se.Field != tt.field || !strings.Contains(se.Message, tt.text) {
					t.Errorf("Compile = %v, want an error on %s saying %q", err, tt.field, tt.text)
				}
			default:
				t.Errorf("Compile = %v, want an error on %s", err, tt.field)
			}
		})
	}
}

func ptr(f float64) *float64 { return &f }

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
