package rules

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/parser"
)

// A bound is a conjunct of a rule's condition that orders a field against
// a literal, or against another field times a literal:
// `new.remaining < new.total * 0.2`, `new.used >= 800.0`. A tenant's
// threshold rules are mostly such bounds on the same fields with different
// literals, and for one event each is monotonic in its literal: y·k rounds
// monotonically in k, rising for y > 0 and falling for y < 0. So the rules
// an event cannot fire through one such bound are a run of them sorted by
// their literal, found by a binary search (see screen).
type bound struct {
	// x is the field on the left, a plain field; y the field multiplied,
	// a plain field too, or a literal alone when y.slot is -1.
	x, y term
	// k is the literal: y's multiplier, or the right side itself.
	k  float64
	op int // <, <=, > or >=, by its number in comparisons
	// cross, when set, makes the bound crossedBelow or crossedAbove of two
	// values and the literal k instead (see crossing).
	cross *crossing
}

// A crossing is `crossedBelow(before, after, k)` or crossedAbove with a
// literal threshold k, as the catalog's threshold rules are written
// (`crossedBelow(pct(old.remaining, old.total), pct(new.remaining,
// new.total), 20)`). Where before and after are read, the call is false
// for every k the after value is not below (above) and, when there is a
// before value, for every k it was below (above) already: each a run of
// the literals in order. key names before and after by their text, so
// that rules crossing the same values share a group.
type crossing struct {
	above         bool
	before, after quick
	key           string
}

// bounds returns the bounds among the conjuncts of e, the && of whatever
// e is made of; a conjunct that decides false decides the whole.
func (c quickCompiler) bounds(e ast.Expr) []bound {
	if e.Kind() == ast.CallKind && !e.AsCall().IsMemberFunction() {
		if call := e.AsCall(); call.FunctionName() == operators.LogicalAnd && len(call.Args()) == 2 {
			return append(c.bounds(call.Args()[0]), c.bounds(call.Args()[1])...)
		}
	}
	if x := c.crossing(e); x != nil {
		return []bound{*x}
	}
	cmp := c.comparison(e)
	if cmp == nil || cmp.op > 3 || !cmp.a.plainField() {
		return nil
	}
	b := bound{x: cmp.a, op: cmp.op}
	switch y := cmp.b; {
	case y.slot == -1 && y.fn == nil:
		b.y, b.k = y, y.a
	case y.slot >= 0 && y.joined && !y.div && y.a == 0:
		b.y, b.k = y, y.m
		b.y.m, b.y.joined = 1, false
	default:
		return nil
	}
	// A literal is finite: CEL refuses one that is not.
	return []bound{b}
}

// crossing returns e as a crossing bound, nil when it is not a call of
// crossedBelow or crossedAbove with a number literal for threshold.
func (c quickCompiler) crossing(e ast.Expr) *bound {
	if e.Kind() != ast.CallKind || e.AsCall().IsMemberFunction() {
		return nil
	}
	call := e.AsCall()
	fn, args := call.FunctionName(), call.Args()
	if (fn != "crossedBelow" && fn != "crossedAbove") || len(args) != 3 || args[2].Kind() != ast.LiteralKind {
		return nil
	}
	k, ok := valueOf(args[2].AsLiteral())
	if !ok {
		return nil
	}
	threshold, ok := k.number()
	before, after := c.expr(args[0]), c.expr(args[1])
	if !ok || before == nil || after == nil {
		return nil
	}
	b, err1 := parser.Unparse(args[0], c.checked.SourceInfo())
	a, err2 := parser.Unparse(args[1], c.checked.SourceInfo())
	if err1 != nil || err2 != nil {
		return nil
	}
	return &bound{k: threshold, cross: &crossing{above: fn == "crossedAbove", before: before, after: after,
		key: fn + "\x00" + b + "\x00" + a}}
}

// plainField reports whether t is a field alone.
func (t *term) plainField() bool {
	return t.slot >= 0 && t.fn == nil && !t.joined && !t.div && t.m == 1 && t.a == 0
}

// A screen is the bounds of the rules watching one tenant's events of one
// entity type and operation, grouped by what they compare and sorted by
// their literal.
type screen struct {
	groups []boundGroup
}

// boundGroup is the bounds that compare the same fields the same way, or
// cross the same values.
type boundGroup struct {
	x, y  term
	op    int
	cross *crossing
	// ks are the bounds' literals, ascending, and rules the index of each
	// one's rule among those watching.
	ks    []float64
	rules []int
}

// newScreen returns the screen of rules, nil when none has a bound. A
// timed rule is left out: its timers are set whatever its condition.
func newScreen(rules []Bound) *screen {
	type entry struct {
		bound
		rule int
	}
	var all []entry
	for i, r := range rules {
		if r.Timed() {
			continue
		}
		for _, b := range r.p.bounds {
			all = append(all, entry{b, i})
		}
	}
	if len(all) == 0 {
		return nil
	}
	type groupKey struct {
		x, y, op int
		cross    string
	}
	key := func(e entry) groupKey {
		if e.cross != nil {
			return groupKey{cross: e.cross.key}
		}
		return groupKey{x: e.x.slot, y: e.y.slot, op: e.op}
	}
	slices.SortStableFunc(all, func(a, b entry) int {
		ka, kb := key(a), key(b)
		if c := cmp.Or(cmp.Compare(ka.cross, kb.cross), cmp.Compare(ka.x, kb.x), cmp.Compare(ka.y, kb.y), cmp.Compare(ka.op, kb.op)); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	s := &screen{}
	for i := 0; i < len(all); {
		g := boundGroup{x: all[i].x, y: all[i].y, op: all[i].op, cross: all[i].cross}
		for k := key(all[i]); i < len(all) && key(all[i]) == k; i++ {
			g.ks = append(g.ks, all[i].k)
			g.rules = append(g.rules, all[i].rule)
		}
		s.groups = append(s.groups, g)
	}
	return s
}

// RuledOut sets, in out, the bit of each rule of w that cannot fire on the
// event: one of its bounds is false there, which decides its condition
// false exactly as evaluating it would. out has a bit for each rule, and
// is cleared first.
func (w Watching) RuledOut(in *Input, out []uint64) {
	clear(out)
	if w.screen == nil {
		return
	}
	for i := range w.screen.groups {
		w.screen.groups[i].ruleOut(in, out)
	}
}

// ruleOut sets the bits of the group's rules whose bound is false on the
// event; none when a field is not a double there, or y is infinite.
func (g *boundGroup) ruleOut(in *Input, out []uint64) {
	if g.cross != nil {
		g.ruleOutCrossings(in, out)
		return
	}
	x, ok := g.x.value(in)
	if !ok {
		return
	}
	// A literal alone is 1·k, which is k exactly.
	y := 1.0
	if g.y.slot != -1 {
		if y, ok = g.y.value(in); !ok || math.IsInf(y, 0) {
			return
		}
	}
	holdsAt := func(k float64) bool { return holds(g.op, x, y*k) }
	// y·k rises with k for y > 0, falls for y < 0, and is the same for
	// every k when y is 0 or NaN, which either search handles; x below it
	// holds from some k on.
	rising, less := y > 0, g.op < 2
	from, to := g.falseRun(holdsAt, rising == less)
	g.mark(from, to, out)
}

// falseRun returns where holds, which is true on a run at one end of the
// literals in order, is false: the run at the other end. rising says it
// holds from some literal on, else up to some literal.
func (g *boundGroup) falseRun(holds func(k float64) bool, rising bool) (from, to int) {
	n := len(g.ks)
	if rising {
		return 0, sort.Search(n, func(i int) bool { return holds(g.ks[i]) })
	}
	return sort.Search(n, func(i int) bool { return !holds(g.ks[i]) }), n
}

// mark sets the bits of the group's rules from from to to.
func (g *boundGroup) mark(from, to int, out []uint64) {
	for _, r := range g.rules[from:to] {
		out[r/64] |= 1 << (r % 64)
	}
}

// ruleOutCrossings sets the bits of the group's crossings that are false
// on the event, as the quick crossedBelow and crossedAbove decide them:
// all of them when the value after is not a number, else those whose
// threshold it has not reached, and, with a number before, those the
// value before had reached already. Nothing when either value is
// undecided.
func (g *boundGroup) ruleOutCrossings(in *Input, out []uint64) {
	bv, ok1 := g.cross.before(in)
	av, ok2 := g.cross.after(in)
	if !ok1 || !ok2 {
		return
	}
	after, ok := av.number()
	if !ok {
		g.mark(0, len(g.ks), out)
		return
	}
	// Below, a value reaches the large thresholds; above, the small ones.
	above := g.cross.above
	from, to := g.falseRun(func(k float64) bool { return reached(above, after, k) }, !above)
	g.mark(from, to, out)
	if before, ok := bv.number(); ok {
		from, to = g.falseRun(func(k float64) bool { return notYet(above, before, k) }, above)
		g.mark(from, to, out)
	}
}
