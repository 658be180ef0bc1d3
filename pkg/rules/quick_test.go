package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/avro"

	"github.com/heraldhq/herald/pkg/configstore"
)

// quickEntity is an entity with a field of each scalar kind, two of each.
func quickEntity(t testing.TB) Entity {
	t.Helper()
	s, err := avro.Parse(`{"type":"record","name":"ItemEvent","fields":[
		{"name":"old","type":["null",{"type":"record","name":"Item","fields":[
			{"name":"d1","type":["null","double"]},{"name":"d2","type":["null","double"]},
			{"name":"n1","type":["null","long"]},{"name":"n2","type":["null","long"]},
			{"name":"s1","type":["null","string"]},{"name":"s2","type":["null","string"]},
			{"name":"b1","type":["null","boolean"]},
			{"name":"t1","type":["null",{"type":"long","logicalType":"timestamp-millis"}]},
			{"name":"t2","type":["null",{"type":"long","logicalType":"timestamp-millis"}]}]}]},
		{"name":"new","type":["null","Item"]}]}`)
	if err != nil {
		t.Fatal(err)
	}
	e, err := EntityFromSchemas("Item", []*avro.Schema{s})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// exprGen writes random conditions over quickEntity, of every construct a
// quick condition handles and some it does not.
type exprGen struct{ r *rand.Rand }

func (g exprGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g exprGen) image() string { return g.pick("old", "new") }

func (g exprGen) num(d int) string {
	if d <= 0 || g.r.IntN(3) == 0 {
		switch g.r.IntN(3) {
		case 0:
			return g.image() + "." + g.pick("d1", "d2", "n1", "n2")
		case 1:
			return g.pick("0", "1", "-3", "7", "9223372036854775807", "4611686018427387904")
		default:
			return g.pick("0.0", "2.5", "-0.5", "1e300", "9.223372036854776e18")
		}
	}
	switch g.r.IntN(8) {
	case 0:
		return "-" + g.num(d-1)
	case 1:
		return fmt.Sprintf("pct(%s, %s)", g.num(d-1), g.num(d-1))
	case 2:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d-1), g.num(d-1), g.num(d-1))
	}
	return fmt.Sprintf("(%s %s %s)", g.num(d-1), g.pick("+", "-", "*", "/", "%"), g.num(d-1))
}

// term is a side of a threshold's comparison: a field or a literal, or
// the two under an arithmetic operator, either way round.
func (g exprGen) term() string {
	if g.r.IntN(3) == 0 {
		return g.num(0)
	}
	f, lit := g.image()+"."+g.pick("d1", "d2", "n1", "n2"), g.num(0)
	if g.r.IntN(2) == 0 {
		f, lit = lit, f
	}
	return fmt.Sprintf("(%s %s %s)", f, g.pick("+", "-", "*", "/"), lit)
}

func (g exprGen) str(d int) string {
	if d <= 0 || g.r.IntN(2) == 0 {
		switch g.r.IntN(4) {
		case 0:
			return `"` + g.pick("", "a", "active", "expired") + `"`
		case 1:
			return g.pick("event.operation", "event.deviceId", "event.id", "tenant.timeZone")
		}
		return g.image() + "." + g.pick("s1", "s2")
	}
	if g.r.IntN(2) == 0 {
		return fmt.Sprintf("(%s + %s)", g.str(d-1), g.str(d-1))
	}
	return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d-1), g.str(d-1), g.str(d-1))
}

func (g exprGen) timestamp(d int) string {
	if d > 0 && g.r.IntN(4) == 0 {
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d-1), g.timestamp(d-1), g.timestamp(d-1))
	}
	return g.pick("old.t1", "new.t1", "old.t2", "new.t2", "event.occurredAt")
}

func (g exprGen) value(d int) string {
	switch g.r.IntN(6) {
	case 0:
		return g.num(d)
	case 1:
		return g.str(d)
	case 2:
		return g.timestamp(d)
	case 3:
		return g.boolean(d)
	case 4:
		return g.image()
	}
	return "null"
}

func (g exprGen) boolean(d int) string {
	if d <= 0 {
		return g.pick("true", "false", "old.b1", "new.b1", "has(new.s1)", "has(old.d1)", "old == null", "new != null")
	}
	cmp := g.pick("<", "<=", ">", ">=", "==", "!=")
	switch g.r.IntN(13) {
	case 0, 1:
		return fmt.Sprintf("(%s %s %s)", g.boolean(d-1), g.pick("&&", "||"), g.boolean(d-1))
	case 2:
		return "!" + g.boolean(d-1)
	case 3:
		return fmt.Sprintf("(%s %s %s)", g.str(d-1), cmp, g.str(d-1))
	case 4:
		return fmt.Sprintf("(%s %s %s)", g.timestamp(d-1), cmp, g.timestamp(d-1))
	case 5:
		return fmt.Sprintf("(%s %s %s)", g.value(d-1), g.pick("==", "!="), g.value(d-1))
	case 6:
		return fmt.Sprintf("isnull(%s)", g.value(d-1))
	case 7:
		return fmt.Sprintf(`(%s in ["a", "active", ""])`, g.str(d-1))
	case 8:
		return fmt.Sprintf("%s(%s, %s, %s)", g.pick("crossedBelow", "crossedAbove"), g.num(d-1), g.num(d-1), g.num(d-1))
	case 9:
		return fmt.Sprintf("(%s ? %s : %s)", g.boolean(d-1), g.boolean(d-1), g.boolean(d-1))
	case 10:
		// Beyond a quick condition: cel-go decides.
		return fmt.Sprintf("(size(%s) %s 1)", g.str(d-1), cmp)
	case 11:
		return fmt.Sprintf("(%s %s %s)", g.term(), cmp, g.term())
	}
	return fmt.Sprintf("(%s %s %s)", g.num(d-1), cmp, g.num(d-1))
}

// fields returns random field values of quickEntity, null one time in five.
func (g exprGen) fields() map[string]any {
	base := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	m := map[string]any{}
	for _, f := range []string{"d1", "d2", "n1", "n2", "s1", "s2", "b1", "t1", "t2"} {
		if g.r.IntN(5) == 0 {
			m[f] = nil
			continue
		}
		switch f[0] {
		case 'd', 'n':
			if g.r.IntN(10) == 0 {
				// Written by a version of the schema where the field
				// had the other numeric type.
				m[f] = []any{int64(3), 2.5}[g.r.IntN(2)]
				continue
			}
		}
		switch f[0] {
		case 'd':
			m[f] = []float64{0, math.Copysign(0, -1), 1, -3, 2.5, 7, 1e300, -1e300, math.NaN(), math.Inf(1), math.Inf(-1),
				9.223372036854776e18, 1 << 53, float64(g.r.IntN(100))}[g.r.IntN(14)]
		case 'n':
			m[f] = []int64{0, 1, -1, -3, 7, math.MaxInt64, math.MinInt64, 1<<53 + 1, 1 << 62, int64(g.r.IntN(100))}[g.r.IntN(10)]
		case 's':
			m[f] = []string{"", "a", "active", "expired"}[g.r.IntN(4)]
		case 'b':
			m[f] = g.r.IntN(2) == 0
		case 't':
			m[f] = base.Add(time.Duration(g.r.IntN(3)) * time.Nanosecond)
		}
	}
	return m
}

// record is m as the judge projects it: only the fields named, sorted,
// each a CEL value.
func record(m map[string]any) *Record {
	r := &Record{}
	for _, name := range []string{"b1", "d1", "d2", "n1", "n2", "s1", "s2", "t1", "t2"} {
		r.Names = append(r.Names, name)
		r.Values = append(r.Values, Value(m[name]))
	}
	return r
}

func (g exprGen) input() *Input {
	in := &Input{
		Event: map[string]any{
			"eventId": Value("evt-1"), "operation": Value(g.pick("CREATE", "UPDATE", "DELETE")),
			"entityType": Value("Item"), "entityId": Value("it-1"),
			"occurredAt": Value(time.Date(2026, 3, 29, 1, 0, 0, 1, time.UTC)),
		},
	}
	if g.r.IntN(2) == 0 {
		in.Event["deviceId"] = Value("8944")
	}
	if g.r.IntN(2) == 0 {
		in.Tenant = map[string]any{"timeZone": g.pick("", "Europe/Madrid")}
	}
	// Images are projected, decoded whole, or absent.
	image := func() any {
		switch g.r.IntN(5) {
		case 0:
			return nil
		case 1:
			return g.fields()
		}
		return record(g.fields())
	}
	in.Old, in.New = image(), image()
	return in
}

// TestQuickConditionsAnswerAsCELDoes generates conditions and events and
// holds every answer a quick condition gives to cel-go's for the same
// condition and event.
func TestQuickConditionsAnswerAsCELDoes(t *testing.T) {
	c := NewCompiler(DefaultLimits)
	entities := map[string]Entity{"Item": quickEntity(t)}
	g := exprGen{r: rand.New(rand.NewPCG(13, 29))}
	var compiled, withQuick, evaluated, decided int
	type condition struct {
		expr string
		*programs
	}
	var conditions []condition
	for i := range 4000 {
		expr := g.boolean(1 + i%4)
		rule, err := c.Compile("acme", "r", configstore.Rule{
			Name: "r", On: configstore.RuleOn{EntityTypes: []string{"Item"}}, When: expr,
			Notification: configstore.RuleNotify{Name: "N"},
		}, entities)
		if err != nil {
			continue
		}
		compiled++
		if p, _ := rule.programs("Item"); p.quickWhen != nil {
			conditions = append(conditions, condition{expr, p})
		}
	}
	withQuick = len(conditions)
	// Each event meets every condition, as an event meets every rule of
	// its tenant: what one condition read of it, the next may reuse. Every
	// other event meets each condition afresh instead, so that each reads
	// its fields itself.
	for e := range 50 {
		shared := g.input()
		for _, p := range conditions {
			in := shared
			if e%2 == 1 {
				in = &Input{Old: shared.Old, New: shared.New, Event: shared.Event, Tenant: shared.Tenant}
			}
			fired, ok := p.quickWhen(in)
			evaluated++
			if !ok {
				continue
			}
			decided++
			out, err := (&Input{Old: in.Old, New: in.New, Event: in.Event, Tenant: in.Tenant}).eval(p.when)
			if err != nil {
				t.Fatalf("%s\non old=%v new=%v event=%v tenant=%v:\nquick gave %v, cel-go failed: %v",
					p.expr, in.Old, in.New, in.Event, in.Tenant, fired, err)
			}
			if b, isBool := out.Value().(bool); !isBool || b != fired {
				t.Fatalf("%s\non old=%v new=%v event=%v tenant=%v:\nquick gave %v, cel-go %v",
					p.expr, in.Old, in.New, in.Event, in.Tenant, fired, out)
			}
		}
	}
	t.Logf("%d conditions compiled, %d with a quick form; %d of %d evaluations decided", compiled, withQuick, decided, evaluated)
	// The comparison means something only if both sides were exercised.
	if compiled < 2000 || withQuick < compiled/2 || decided < evaluated/2 {
		t.Fatalf("too little compared: %d conditions compiled, %d with a quick form; %d of %d evaluations decided",
			compiled, withQuick, decided, evaluated)
	}
}

// TestQuickFormsOfTheCatalogsConditions pins which conditions have a quick
// form: the catalog's kinds do, and what reaches beyond fields and
// operators does not.
func TestQuickFormsOfTheCatalogsConditions(t *testing.T) {
	c := NewCompiler(DefaultLimits)
	entities := map[string]Entity{"Item": quickEntity(t)}
	for expr, want := range map[string]bool{
		"new.d1 < new.d2 * 0.2 && old.d1 >= old.d2 * 0.2":                true,
		`old.s1 != "expired" && new.s1 == "expired" && new.b1 != true`:   true,
		`!(old.s1 in ["expired", "cancelled"]) && new.s1 in ["expired"]`: true,
		`new.s1 == "active" && (old == null || old.s2 == "pending")`:     true,
		"crossedBelow(pct(old.d1, old.d2), pct(new.d1, new.d2), 20)":     true,
		`event.operation == "DELETE" ? old.t1 != null : new.t1 > old.t1`: true,
		"new.n1 * 2 > 10 && new.d1 + new.n1 < 3.5":                       true,
		"size(new.s1) > 3":                                        false,
		`new.s1.startsWith("a")`:                                  false,
		`new.t1 - duration("72h") < event.occurredAt`:             false,
		`new.s1 in [old.s1, "a"]`:                                 false,
		"[new.d1, new.d2].exists(x, x > 1.0)":                     false,
		`has(new.s1) && dayAt(new.t1, 1, "09:00", "UTC") != null`: false,
	} {
		rule, err := c.Compile("acme", "r", configstore.Rule{
			Name: "r", On: configstore.RuleOn{EntityTypes: []string{"Item"}}, When: expr,
			Notification: configstore.RuleNotify{Name: "N"},
		}, entities)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		p, _ := rule.programs("Item")
		if got := p.quickWhen != nil; got != want {
			t.Errorf("%s: quick form %v, want %v", expr, got, want)
		}
	}
}

// TestQuickConditionsLeaveFailuresToCEL: a condition a quick form cannot
// decide (here an int overflow, a null compared with a number) fails with
// cel-go's error, as a rule without a quick form would.
func TestQuickConditionsLeaveFailuresToCEL(t *testing.T) {
	c := NewCompiler(DefaultLimits)
	entities := map[string]Entity{"Item": quickEntity(t)}
	for expr, msg := range map[string]string{
		"new.n1 * 2 > 0": "overflow",
		"new.d1 > 1.0":   "no such overload",
	} {
		rule, err := c.Compile("acme", "r", configstore.Rule{
			Name: "r", On: configstore.RuleOn{EntityTypes: []string{"Item"}}, When: expr,
			Notification: configstore.RuleNotify{Name: "N"},
		}, entities)
		if err != nil {
			t.Fatal(err)
		}
		in := &Input{New: map[string]any{"n1": int64(math.MaxInt64), "d1": nil}}
		_, err = rule.Evaluate("Item", in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want one saying %q", expr, err, msg)
		}
	}
}

// TestAQuickConditionAllocatesNothing pins what quick conditions are for:
// once an event's fields are read, judging another threshold rule on it
// allocates nothing.
func TestAQuickConditionAllocatesNothing(t *testing.T) {
	c := NewCompiler(DefaultLimits)
	entities := map[string]Entity{"Item": quickEntity(t)}
	rule, err := c.Compile("acme", "r", configstore.Rule{
		Name: "r", On: configstore.RuleOn{EntityTypes: []string{"Item"}},
		When:         "new.d1 < new.d2 * 0.2 && old.d1 >= old.d2 * 0.2 && new.s1 != \"expired\"",
		Notification: configstore.RuleNotify{Name: "N"},
	}, entities)
	if err != nil {
		t.Fatal(err)
	}
	image := func(d1 float64) *Record {
		return record(map[string]any{"d1": d1, "d2": 1000.0, "s1": "active"})
	}
	in := &Input{Old: image(600), New: image(500)}
	bound, _ := rule.For("Item")
	if fired, err := bound.Fires(in); err != nil || fired {
		t.Fatalf("Fires = %v, %v; want false", fired, err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := bound.Fires(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations a rule, want none", allocs)
	}
}
