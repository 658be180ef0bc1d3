package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// TestScreenRulesOutOnlyWhatCannotFire generates a tenant's threshold
// rules, most of them bounds on the same fields with different literals,
// some mixed with other conjuncts and some of other shapes, and events of
// every kind of value. Every rule the screen rules out must not fire when
// it is evaluated alone; and a rule whose condition is one bound must be
// ruled out whenever that bound is decided false, so that the binary
// search finds the whole run.
func TestScreenRulesOutOnlyWhatCannotFire(t *testing.T) {
	c := NewCompiler(DefaultLimits)
	entities := map[string]Entity{"Item": quickEntity(t)}
	g := exprGen{r: rand.New(rand.NewPCG(7, 41))}
	literals := []string{"0.0", "-0.0", "0.05", "0.5", "1.0", "2.5", "-1.0", "-0.25", "1e300", "3", "-7"}
	field := func(image string) string { return image + "." + g.pick("d1", "d2") }
	bound := func() string {
		lit := literals[g.r.IntN(len(literals))]
		op := g.pick("<", "<=", ">", ">=")
		image := g.image()
		if g.r.IntN(3) == 0 {
			return fmt.Sprintf("%s %s %s", field(image), op, lit)
		}
		return fmt.Sprintf("%s %s %s * %s", field(image), op, field(image), lit)
	}
	// A crossing as the catalog writes one, of percentages or of fields.
	crossing := func() string {
		fn, k := g.pick("crossedBelow", "crossedAbove"), g.pick("20", "50", "5", "0", "-3", "7.5", "100", "2.5")
		if g.r.IntN(2) == 0 {
			return fmt.Sprintf("%s(pct(old.d1, old.d2), pct(new.d1, new.d2), %s)", fn, k)
		}
		f := g.pick("d1", "d2", "n1")
		return fmt.Sprintf("%s(old.%s, new.%s, %s)", fn, f, f, k)
	}
	var rules []*Rule
	single, crosses := map[string]bool{}, map[string]bool{}
	for i := range 400 {
		var when string
		switch g.r.IntN(8) {
		case 0, 1:
			when = bound()
			single[fmt.Sprint(i)] = true
		case 2, 3:
			when = bound() + " && " + bound()
		case 4:
			when = fmt.Sprintf(`%s && new.s1 == "active"`, bound())
		case 5:
			when = crossing()
			crosses[fmt.Sprint(i)] = true
		case 6:
			when = fmt.Sprintf(`new.s1 == "active" && %s`, crossing())
		default:
			// Not bounds: a literal on the left, an addition, equality.
			when = g.pick("2.0 * new.d2 > new.d1", "new.d1 < new.d2 + 1.0", "new.d1 == new.d2 * 0.5", "new.d1 < new.n1")
		}
		r, err := c.Compile("acme", fmt.Sprint(i), configstore.Rule{
			Name: "r", On: configstore.RuleOn{EntityTypes: []string{"Item"}}, When: when,
			Notification: configstore.RuleNotify{Name: "N"},
		}, entities)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		rules = append(rules, r)
	}
	w := Watch("Item", rules...)
	if w.screen == nil || len(w.screen.groups) < 10 {
		t.Fatalf("the screen of %d rules has too few groups to test", len(rules))
	}
	var ruledOut, mustRuleOut, crossingsRuledOut int
	out := make([]uint64, (len(w.Rules)+63)/64)
	for e := range 400 {
		in := g.input()
		w.RuledOut(in, out)
		for i, b := range w.Rules {
			fresh := &Input{Old: in.Old, New: in.New, Event: in.Event, Tenant: in.Tenant}
			fired, err := b.Fires(fresh)
			out1 := out[i/64]&(1<<(i%64)) != 0
			if out1 {
				ruledOut++
				if crosses[b.ID] {
					crossingsRuledOut++
				}
				if fired || err != nil {
					t.Fatalf("event %d: rule %q was ruled out, but it fires (%v, %v) on old=%v new=%v",
						e, b.Spec.When, fired, err, in.Old, in.New)
				}
			}
			if single[b.ID] {
				if v, decided := b.p.quickWhen(&Input{Old: in.Old, New: in.New, Event: in.Event, Tenant: in.Tenant}); decided && !v {
					// The screen reads doubles only, and leaves an infinite
					// multiplied field to the rules one by one.
					bd := b.p.bounds[0]
					if _, ok := bd.x.value(&Input{Old: in.Old, New: in.New}); !ok {
						continue
					}
					if bd.y.slot >= 0 {
						if yv, ok := bd.y.value(&Input{Old: in.Old, New: in.New}); !ok || math.IsInf(yv, 0) {
							continue
						}
					}
					mustRuleOut++
					if !out1 {
						t.Fatalf("event %d: rule %q is decided false but was not ruled out, on old=%v new=%v",
							e, b.Spec.When, in.Old, in.New)
					}
				}
			}
		}
	}
	t.Logf("%d rules in %d groups; over 400 events %d ruled out, %d of them bounds alone decided false, %d crossings alone",
		len(rules), len(w.screen.groups), ruledOut, mustRuleOut, crossingsRuledOut)
	if ruledOut < 400*len(rules)/10 || mustRuleOut < 1000 || crossingsRuledOut < 1000 {
		t.Fatalf("too little ruled out to mean anything: %d, of which %d single bounds and %d crossings", ruledOut, mustRuleOut, crossingsRuledOut)
	}
}
