package rules

import (
	"cmp"
	"math"
	"slices"
	"sort"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
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
}

// bounds returns the bounds among the conjuncts of e, the && of whatever
// e is made of; a conjunct that decides false decides the whole.
func (c quickCompiler) bounds(e ast.Expr) []bound {
	if e.Kind() == ast.CallKind && !e.AsCall().IsMemberFunction() {
		if call := e.AsCall(); call.FunctionName() == operators.LogicalAnd && len(call.Args()) == 2 {
			return append(c.bounds(call.Args()[0]), c.bounds(call.Args()[1])...)
		}
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

// boundGroup is the bounds that compare the same fields the same way.
type boundGroup struct {
	x, y term
	op   int
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
		if r.Timed() || r.p.quickWhen == nil {
			continue
		}
		for _, b := range r.p.bounds {
			all = append(all, entry{b, i})
		}
	}
	if len(all) == 0 {
		return nil
	}
	key := func(e entry) [3]int { return [3]int{e.x.slot, e.y.slot, e.op} }
	slices.SortStableFunc(all, func(a, b entry) int {
		ka, kb := key(a), key(b)
		if c := slices.Compare(ka[:], kb[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	s := &screen{}
	for i := 0; i < len(all); {
		g := boundGroup{x: all[i].x, y: all[i].y, op: all[i].op}
		for ; i < len(all) && key(all[i]) == [3]int{g.x.slot, g.y.slot, g.op}; i++ {
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
	x, ok := g.x.value(in)
	if !ok {
		return
	}
	literal := g.y.slot == -1
	y := 1.0
	if !literal {
		if y, ok = g.y.value(in); !ok || math.IsInf(y, 0) {
			return
		}
	}
	holdsAt := func(i int) bool {
		if literal {
			return holds(g.op, x, g.ks[i])
		}
		return holds(g.op, x, y*g.ks[i])
	}
	// y·k rises with k for y > 0, falls for y < 0, and is the same for
	// every k when y is 0 or NaN, which either search below handles.
	n := len(g.ks)
	var from, to int // the run ruled out
	if rising, less := literal || y > 0, g.op < 2; rising == less {
		// False up to some k, true from there on.
		from, to = 0, sort.Search(n, holdsAt)
	} else {
		// True up to some k, false from there on.
		from, to = sort.Search(n, func(i int) bool { return !holdsAt(i) }), n
	}
	for _, r := range g.rules[from:to] {
		out[r/64] |= 1 << (r % 64)
	}
}
