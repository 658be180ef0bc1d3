package rules

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// A quick condition is a rule's `when` compiled to Go closures over the
// event's values, for the part of CEL conditions are written in: fields of
// old, new, event and tenant; literals; comparison, equality, arithmetic and
// logic; `in` a list of strings; isnull, pct, crossedBelow and
// crossedAbove. cel-go's interpreter resolves each field read through its
// attribute machinery and boxes every intermediate value; a quick condition
// does the same work on unboxed values, and finds a projected image's
// fields by position, each once an event. A threshold rule costs about a
// quarter of what it costs in cel-go (BenchmarkEvaluate in
// services/rule-evaluator) and allocates nothing.
//
// It never answers differently from cel-go. It decides an event only when
// every value it meets is of a kind it knows (null, bool, int, double,
// string, timestamp, a whole image compared with null) and no operation
// fails; anything else (an error, an overflow, a null where a number is
// wanted, a value of another kind) leaves it undecided, and the condition is
// then evaluated by cel-go, which gives the answer and its error message.
// Each operation follows cel-go's for the same operands; a test compares the
// two on generated conditions and events.
type quick func(in *Input) (val, bool)

// kind is the kind of a value a quick condition works on.
type kind uint8

const (
	kNull kind = iota
	kBool
	kInt
	kDouble
	kString
	kTime
	// kObj is a whole entity image, which a quick condition only compares
	// with null.
	kObj
)

// val is one value of a quick condition, unboxed: a timestamp is its
// seconds since the epoch in i and their nanoseconds in ns.
type val struct {
	k  kind
	b  bool
	ns int32
	i  int64
	f  float64
	s  string
}

func vTime(t time.Time) val { return val{k: kTime, i: t.Unix(), ns: int32(t.Nanosecond())} }

var (
	vNull  = val{k: kNull}
	vTrue  = val{k: kBool, b: true}
	vFalse = val{k: kBool}
)

func vBool(b bool) val { return val{k: kBool, b: b} }

func (v val) isNaN() bool { return v.k == kDouble && math.IsNaN(v.f) }

// valueOf reads a decoded value, native or a CEL value, as a quick value;
// false for a kind a quick condition does not handle.
func valueOf(v any) (val, bool) {
	switch x := v.(type) {
	case nil, types.Null:
		return vNull, true
	case types.Bool:
		return vBool(bool(x)), true
	case bool:
		return vBool(x), true
	case types.Int:
		return val{k: kInt, i: int64(x)}, true
	case int64:
		return val{k: kInt, i: x}, true
	case int32:
		return val{k: kInt, i: int64(x)}, true
	case int:
		return val{k: kInt, i: int64(x)}, true
	case types.Double:
		return val{k: kDouble, f: float64(x)}, true
	case float64:
		return val{k: kDouble, f: x}, true
	case float32:
		return val{k: kDouble, f: float64(x)}, true
	case types.String:
		return val{k: kString, s: string(x)}, true
	case string:
		return val{k: kString, s: x}, true
	case types.Timestamp:
		return vTime(x.Time), true
	case time.Time:
		return vTime(x), true
	}
	return val{}, false
}

// slots number the fields quick conditions read, so that an event reads
// each once however many rules read it.
var slots = struct {
	sync.Mutex
	byName map[string]int
	// count is len(byName), for an event's input to size itself without
	// the lock.
	count atomic.Int32
}{byName: map[string]int{}}

// slotOf returns the number of the field a selection reads, such as
// new.remaining.
func slotOf(s ast.SelectExpr) int {
	name := s.Operand().AsIdent() + "." + s.FieldName()
	slots.Lock()
	defer slots.Unlock()
	n, ok := slots.byName[name]
	if !ok {
		n = len(slots.byName)
		slots.byName[name] = n
		slots.count.Store(int32(n + 1))
	}
	return n
}

// fieldRead is a field a quick condition has read of an event.
type fieldRead struct {
	v         val
	ok, known bool
	// double is whether it read as a double.
	double bool
}

// recall returns what the field in slot read as, if a rule has read it.
func (in *Input) recall(slot int) (*fieldRead, bool) {
	if slot < len(in.read) && in.read[slot].known {
		return &in.read[slot], true
	}
	return nil, false
}

// remember keeps what the field in slot read as, for the event's other
// rules.
func (in *Input) remember(slot int, v val, ok bool) {
	if slot >= len(in.read) {
		in.read = append(in.read, make([]fieldRead, int(slots.count.Load())-len(in.read))...)
	}
	in.read[slot] = fieldRead{v: v, ok: ok, known: true, double: ok && v.k == kDouble}
}

// A verdict is a quick condition's top: whether the rule fires, and
// whether the quick condition could tell. The logic of a condition and its
// comparisons of doubles answer in this form directly, without building a
// value for each step.
type verdict func(in *Input) (fired, decided bool)

// quickCompiler builds a quick condition from a checked expression.
type quickCompiler struct {
	checked  *ast.AST
	provider *provider
}

// compileQuick returns the quick form of the checked condition a, or nil
// when it uses what a quick condition does not handle, and the bounds
// among its conjuncts (see screen).
func compileQuick(a *ast.AST, p *provider) (verdict, []bound) {
	c := quickCompiler{checked: a, provider: p}
	v := c.verdict(a.Expr())
	if v == nil {
		return nil, nil
	}
	return v, c.bounds(a.Expr())
}

// verdict compiles a boolean expression to a verdict: &&, || and ! of
// verdicts, a comparison of doubles, or any other expression's value, read
// as a bool. A verdict is decided only on a bool, so the logic below
// follows binary's.
func (c quickCompiler) verdict(e ast.Expr) verdict {
	if e.Kind() == ast.CallKind && !e.AsCall().IsMemberFunction() {
		call := e.AsCall()
		args := call.Args()
		switch fn := call.FunctionName(); {
		case fn == operators.LogicalAnd && len(args) == 2:
			a, b := c.verdict(args[0]), c.verdict(args[1])
			if a == nil || b == nil {
				return nil
			}
			return func(in *Input) (bool, bool) {
				l, lok := a(in)
				if lok && !l {
					return false, true
				}
				r, rok := b(in)
				if rok && !r {
					return false, true
				}
				return true, lok && rok
			}
		case fn == operators.LogicalOr && len(args) == 2:
			a, b := c.verdict(args[0]), c.verdict(args[1])
			if a == nil || b == nil {
				return nil
			}
			return func(in *Input) (bool, bool) {
				l, lok := a(in)
				if lok && l {
					return true, true
				}
				r, rok := b(in)
				if rok && r {
					return true, true
				}
				return false, lok && rok
			}
		case fn == operators.LogicalNot && len(args) == 1:
			a := c.verdict(args[0])
			if a == nil {
				return nil
			}
			return func(in *Input) (bool, bool) {
				v, ok := a(in)
				return !v, ok
			}
		case len(args) == 2 && slices.Contains(comparisons, fn):
			if cmp := c.comparison(e); cmp != nil {
				return cmp.verdict()
			}
		}
	}
	return c.verdictOf(c.expr(e))
}

// verdictOf reads a quick value as a verdict: decided only on a bool.
func (quickCompiler) verdictOf(q quick) verdict {
	if q == nil {
		return nil
	}
	return func(in *Input) (bool, bool) {
		v, ok := q(in)
		return v.b, ok && v.k == kBool
	}
}

func (c quickCompiler) expr(e ast.Expr) quick {
	switch e.Kind() {
	case ast.LiteralKind:
		v, ok := valueOf(e.AsLiteral())
		if !ok {
			return nil
		}
		return func(*Input) (val, bool) { return v, true }
	case ast.IdentKind:
		return c.image(e.AsIdent())
	case ast.SelectKind:
		return c.selection(e)
	case ast.CallKind:
		return c.call(e)
	}
	return nil
}

// variable returns what reads the variable called name of an event's
// input; nil for a name rules do not have.
func variable(name string) func(in *Input) any {
	switch name {
	case "old":
		return func(in *Input) any { return in.Old }
	case "new":
		return func(in *Input) any { return in.New }
	case "event":
		return func(in *Input) any { return in.Event }
	case "tenant":
		return func(in *Input) any { return in.Tenant }
	}
	return nil
}

// image reads old or new whole, which a condition can only compare with
// null.
func (c quickCompiler) image(name string) quick {
	if !isImage(name) {
		return nil
	}
	get := variable(name)
	return func(in *Input) (val, bool) {
		switch image(get(in)).(type) {
		case types.Null:
			return vNull, true
		case map[string]any:
			return val{k: kObj}, true
		}
		// An image read whole is decoded whole, never projected.
		return val{}, false
	}
}

// selection reads one field of old, new, event or tenant, through the same
// field types cel-go reads it with.
func (c quickCompiler) selection(e ast.Expr) quick {
	s := e.AsSelect()
	op := s.Operand()
	if op.Kind() != ast.IdentKind {
		return nil
	}
	get := variable(op.AsIdent())
	if get == nil {
		return nil
	}
	typ := c.checked.GetType(op.ID())
	if typ == nil {
		return nil
	}
	ft, ok := c.provider.FindStructFieldType(typ.TypeName(), s.FieldName())
	if !ok {
		return nil
	}
	if s.IsTestOnly() {
		return func(in *Input) (val, bool) { return vBool(ft.IsSet(image(get(in)))), true }
	}
	slot := slotOf(s)
	return func(in *Input) (val, bool) {
		if r, ok := in.recall(slot); ok {
			return r.v, r.ok
		}
		got, err := ft.GetFrom(image(get(in)))
		if err != nil {
			return val{}, false
		}
		v, ok := valueOf(got)
		in.remember(slot, v, ok)
		return v, ok
	}
}

func (c quickCompiler) call(e ast.Expr) quick {
	call := e.AsCall()
	if call.IsMemberFunction() {
		return nil
	}
	args := call.Args()
	fn := call.FunctionName()
	if fn == operators.In {
		return c.inStrings(args)
	}
	qs := make([]quick, len(args))
	for i, a := range args {
		if qs[i] = c.expr(a); qs[i] == nil {
			return nil
		}
	}
	switch len(qs) {
	case 1:
		return unary(fn, qs[0])
	case 2:
		if op, ok := orderings[fn]; ok {
			return ordering(op, qs[0], qs[1])
		}
		if op, ok := intOps[fn]; ok {
			return c.arithmetic(e.ID(), fn, op, qs[0], qs[1])
		}
		return binary(fn, qs[0], qs[1])
	case 3:
		return ternary(fn, qs[0], qs[1], qs[2])
	}
	return nil
}

func unary(fn string, a quick) quick {
	switch fn {
	case operators.LogicalNot:
		return func(in *Input) (val, bool) {
			v, ok := a(in)
			if !ok || v.k != kBool {
				return val{}, false
			}
			return vBool(!v.b), true
		}
	case operators.Negate:
		return func(in *Input) (val, bool) {
			v, ok := a(in)
			switch {
			case !ok:
			case v.k == kDouble:
				return val{k: kDouble, f: -v.f}, true
			case v.k == kInt:
				return fromInt(types.Int(v.i).Negate())
			}
			return val{}, false
		}
	case "isnull":
		return func(in *Input) (val, bool) {
			v, ok := a(in)
			return vBool(v.k == kNull), ok
		}
	}
	return nil
}

func binary(fn string, a, b quick) quick {
	switch fn {
	case operators.LogicalAnd:
		// CEL's && is false when either side is false, whatever the other
		// gives, even an error.
		return func(in *Input) (val, bool) {
			l, lok := a(in)
			if lok && l.k == kBool && !l.b {
				return vFalse, true
			}
			r, rok := b(in)
			if rok && r.k == kBool && !r.b {
				return vFalse, true
			}
			if lok && rok && l.k == kBool && r.k == kBool {
				return vTrue, true
			}
			return val{}, false
		}
	case operators.LogicalOr:
		return func(in *Input) (val, bool) {
			l, lok := a(in)
			if lok && l.k == kBool && l.b {
				return vTrue, true
			}
			r, rok := b(in)
			if rok && r.k == kBool && r.b {
				return vTrue, true
			}
			if lok && rok && l.k == kBool && r.k == kBool {
				return vFalse, true
			}
			return val{}, false
		}
	case operators.Equals, operators.NotEquals:
		not := fn == operators.NotEquals
		return func(in *Input) (val, bool) {
			l, ok := a(in)
			if !ok {
				return val{}, false
			}
			r, ok := b(in)
			if !ok {
				return val{}, false
			}
			eq, ok := equal(l, r)
			return vBool(eq != not), ok
		}
	case "pct":
		return func(in *Input) (val, bool) {
			part, ok1 := a(in)
			whole, ok2 := b(in)
			if !ok1 || !ok2 {
				return val{}, false
			}
			p, ok1 := part.number()
			w, ok2 := whole.number()
			if !ok1 || !ok2 || w == 0 {
				return vNull, true
			}
			r := p * 100 / w
			if math.IsInf(r, 0) || math.IsNaN(r) {
				return vNull, true
			}
			return val{k: kDouble, f: r}, true
		}
	}
	return nil
}

func ternary(fn string, a, b, c quick) quick {
	switch fn {
	case operators.Conditional:
		return func(in *Input) (val, bool) {
			cond, ok := a(in)
			if !ok || cond.k != kBool {
				return val{}, false
			}
			if cond.b {
				return b(in)
			}
			return c(in)
		}
	case "crossedBelow", "crossedAbove":
		above := fn == "crossedAbove"
		return func(in *Input) (val, bool) {
			ov, ok1 := a(in)
			nv, ok2 := b(in)
			tv, ok3 := c(in)
			if !ok1 || !ok2 || !ok3 {
				return val{}, false
			}
			nw, ok1 := nv.number()
			t, ok2 := tv.number()
			if !ok1 || !ok2 {
				return vFalse, true
			}
			old, hasOld := ov.number()
			return vBool(reached(above, nw, t) && (!hasOld || notYet(above, old, t))), true
		}
	}
	return nil
}

// reached is what crossedBelow asks of the value after, below the
// threshold t, and crossedAbove at or above it.
func reached(above bool, v, t float64) bool {
	if above {
		return v >= t
	}
	return v < t
}

// notYet is what they ask of the value before: the other side of t. A NaN
// is on neither side.
func notYet(above bool, v, t float64) bool {
	if above {
		return v < t
	}
	return v >= t
}

// number is v as a float64, as crossed and pct read numbers.
func (v val) number() (float64, bool) {
	switch v.k {
	case kDouble:
		return v.f, true
	case kInt:
		return float64(v.i), true
	}
	return 0, false
}

// inStrings is `x in [...]` with a list of string literals, which cel-go
// plans as a lookup in a set of them: true for a string in it, false for
// any other value of a kind a quick condition knows.
func (c quickCompiler) inStrings(args []ast.Expr) quick {
	if len(args) != 2 || args[1].Kind() != ast.ListKind {
		return nil
	}
	set := map[string]bool{}
	for _, el := range args[1].AsList().Elements() {
		if el.Kind() != ast.LiteralKind {
			return nil
		}
		s, ok := el.AsLiteral().(types.String)
		if !ok {
			return nil
		}
		set[string(s)] = true
	}
	if len(set) == 0 {
		return nil
	}
	x := c.expr(args[0])
	if x == nil {
		return nil
	}
	return func(in *Input) (val, bool) {
		v, ok := x(in)
		if !ok || v.k == kObj {
			return val{}, false
		}
		return vBool(v.k == kString && set[v.s]), true
	}
}

// equal is CEL's heterogeneous equality, as each cel-go value's Equal
// gives it.
func equal(a, b val) (eq, ok bool) {
	switch {
	case a.k == kObj || b.k == kObj:
		// An image equals null only when it is null itself.
		if a.k == kNull || b.k == kNull {
			return false, true
		}
		return false, false
	case a.k == kNull || b.k == kNull:
		return a.k == b.k, true
	case a.isNaN() || b.isNaN():
		return false, true
	case a.k == kInt && b.k == kInt:
		return a.i == b.i, true
	case a.k == kDouble && b.k == kDouble:
		return a.f == b.f, true
	case a.k == kDouble && b.k == kInt:
		return a.f == float64(b.i), true
	case a.k == kInt && b.k == kDouble:
		return float64(a.i) == b.f, true
	case a.k != b.k:
		return false, true
	case a.k == kString:
		return a.s == b.s, true
	case a.k == kBool:
		return a.b == b.b, true
	case a.k == kTime:
		return a.i == b.i && a.ns == b.ns, true
	}
	return false, false
}

// compareFloat orders two doubles, and a double and an int as the int's
// float64: cel-go's compareDoubleInt first checks the double against the
// int64 range, which orders it as the float64 comparison would anyway.
func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compare orders two values of one kind, or two numbers.
func compare(a, b val) (int, bool) {
	switch {
	case a.k == kInt && b.k == kInt:
		return compareInt(a.i, b.i), true
	case a.k == kDouble && b.k == kDouble:
		return compareFloat(a.f, b.f), true
	case a.k == kDouble && b.k == kInt:
		return compareFloat(a.f, float64(b.i)), true
	case a.k == kInt && b.k == kDouble:
		return compareFloat(float64(a.i), b.f), true
	case a.k != b.k:
		return 0, false
	case a.k == kString:
		return strings.Compare(a.s, b.s), true
	case a.k == kBool:
		switch {
		case a.b == b.b:
			return 0, true
		case b.b:
			return -1, true
		}
		return 1, true
	case a.k == kTime:
		if c := compareInt(a.i, b.i); c != 0 {
			return c, true
		}
		return compareInt(int64(a.ns), int64(b.ns)), true
	}
	return 0, false
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// orderings hold, for each ordering operator, which results of a
// comparison make it true.
var orderings = map[string][3]bool{
	operators.Less:          {true, false, false},
	operators.LessEquals:    {true, true, false},
	operators.Greater:       {false, false, true},
	operators.GreaterEquals: {false, true, true},
}

// ordering is <, <=, > or >=: false when either side is NaN, as in cel-go's
// standard library, else the comparison.
func ordering(holds [3]bool, a, b quick) quick {
	return func(in *Input) (val, bool) {
		l, ok := a(in)
		if !ok {
			return val{}, false
		}
		r, ok := b(in)
		if !ok {
			return val{}, false
		}
		// cel-go refuses a left side that cannot be ordered before it
		// looks for NaN.
		if l.k == kNull || l.k == kObj {
			return val{}, false
		}
		if l.isNaN() || r.isNaN() {
			return vFalse, true
		}
		c, ok := compare(l, r)
		if !ok {
			return val{}, false
		}
		return vBool(holds[c+1]), true
	}
}

// intOps hold, for each arithmetic operator, cel-go's operation on ints,
// which checks for overflow.
var intOps = map[string]func(a, b types.Int) ref.Val{
	operators.Add:      func(a, b types.Int) ref.Val { return a.Add(b) },
	operators.Subtract: func(a, b types.Int) ref.Val { return a.Subtract(b) },
	operators.Multiply: func(a, b types.Int) ref.Val { return a.Multiply(b) },
	operators.Divide:   func(a, b types.Int) ref.Val { return a.Divide(b) },
	operators.Modulo:   func(a, b types.Int) ref.Val { return a.Modulo(b) },
}

// arithmetic is +, -, *, / or %. An int meets a double only where promote
// widens it: for the mixed overloads Herald declares, or where the checker
// left the overload to run time.
func (c quickCompiler) arithmetic(id int64, fn string, onInts func(a, b types.Int) ref.Val, a, b quick) quick {
	ids := c.checked.GetOverloadIDs(id)
	widens := len(ids) != 1 || ids[0] == fn || strings.HasPrefix(ids[0], "herald_")
	var onFloats func(a, b float64) float64
	switch fn {
	case operators.Add:
		onFloats = func(a, b float64) float64 { return a + b }
	case operators.Subtract:
		onFloats = func(a, b float64) float64 { return a - b }
	case operators.Multiply:
		onFloats = func(a, b float64) float64 { return a * b }
	case operators.Divide:
		onFloats = func(a, b float64) float64 { return a / b }
	}
	return func(in *Input) (val, bool) {
		l, ok := a(in)
		if !ok {
			return val{}, false
		}
		r, ok := b(in)
		if !ok {
			return val{}, false
		}
		switch {
		case l.k == kInt && r.k == kInt:
			return fromInt(onInts(types.Int(l.i), types.Int(r.i)))
		case onFloats == nil:
		case l.k == kDouble && r.k == kDouble:
			return val{k: kDouble, f: onFloats(l.f, r.f)}, true
		case widens && l.k == kInt && r.k == kDouble:
			return val{k: kDouble, f: onFloats(float64(l.i), r.f)}, true
		case widens && l.k == kDouble && r.k == kInt:
			return val{k: kDouble, f: onFloats(l.f, float64(r.i))}, true
		case fn == operators.Add && l.k == kString && r.k == kString:
			return val{k: kString, s: l.s + r.s}, true
		}
		return val{}, false
	}
}

// fromInt reads the result of cel-go's int operation: an int, or an error
// (an overflow, a division by zero) a quick condition leaves to cel-go.
func fromInt(v ref.Val) (val, bool) {
	if i, ok := v.(types.Int); ok {
		return val{k: kInt, i: int64(i)}, true
	}
	return val{}, false
}

// doubles is a subexpression of doubles (double literals and fields, and
// arithmetic on them) evaluated on float64 alone, which is most of a
// threshold rule. It gives false where a value is not a double (a null, an
// int an older schema wrote), and the general closures take over.
type doubles func(in *Input) (float64, bool)

// doubles returns e's doubles form, nil when e is not of doubles.
func (c quickCompiler) doubles(e ast.Expr) doubles {
	switch e.Kind() {
	case ast.LiteralKind:
		if d, ok := e.AsLiteral().(types.Double); ok {
			return func(*Input) (float64, bool) { return float64(d), true }
		}
	case ast.SelectKind:
		t := c.checked.GetType(e.ID())
		if t == nil || !(t.IsExactType(types.DoubleType) || t.IsExactType(types.NewNullableType(types.DoubleType))) {
			return nil
		}
		read := c.selection(e)
		if read == nil {
			return nil
		}
		// What the event's rules have read of the field already, straight
		// from where selection keeps it.
		slot := slotOf(e.AsSelect())
		return func(in *Input) (float64, bool) {
			if r, ok := in.recall(slot); ok {
				return r.v.f, r.double
			}
			v, ok := read(in)
			return v.f, ok && v.k == kDouble
		}
	case ast.CallKind:
		call := e.AsCall()
		args := call.Args()
		if call.IsMemberFunction() || len(args) != 2 {
			return nil
		}
		a, b := c.doubles(args[0]), c.doubles(args[1])
		// An int literal beside a double is widened to one (see promote):
		// `new.total * 2`.
		if ids := c.checked.GetOverloadIDs(e.ID()); len(ids) == 1 && strings.HasPrefix(ids[0], "herald_") {
			if a == nil && b != nil {
				a = c.operand(args[0])
			}
			if b == nil && a != nil {
				b = c.operand(args[1])
			}
		}
		if a == nil || b == nil {
			return nil
		}
		switch call.FunctionName() {
		case operators.Add:
			return func(in *Input) (float64, bool) { x, ok1 := a(in); y, ok2 := b(in); return x + y, ok1 && ok2 }
		case operators.Subtract:
			return func(in *Input) (float64, bool) { x, ok1 := a(in); y, ok2 := b(in); return x - y, ok1 && ok2 }
		case operators.Multiply:
			return func(in *Input) (float64, bool) { x, ok1 := a(in); y, ok2 := b(in); return x * y, ok1 && ok2 }
		case operators.Divide:
			return func(in *Input) (float64, bool) { x, ok1 := a(in); y, ok2 := b(in); return x / y, ok1 && ok2 }
		}
	}
	return nil
}

// operand is doubles for a comparison's side: cel-go compares an int with
// a double as the int's float64 (see compareFloat), so an int literal is
// one.
func (c quickCompiler) operand(e ast.Expr) doubles {
	if k, ok := intLiteral(e); ok {
		return func(*Input) (float64, bool) { return k, true }
	}
	return c.doubles(e)
}

// intLiteral is e's value as a float64 when e is an int literal.
func intLiteral(e ast.Expr) (float64, bool) {
	if e.Kind() == ast.LiteralKind {
		if i, ok := e.AsLiteral().(types.Int); ok {
			return float64(i), true
		}
	}
	return 0, false
}

// A comparison is a comparison of two doubles operands: a threshold
// rule's `new.remaining < new.total * 0.2`. Where either side is not a
// double on an event, other answers.
type comparison struct {
	op    int
	a, b  term
	other verdict
}

// comparison returns e's comparison form, nil when e is not a comparison
// of doubles.
func (c quickCompiler) comparison(e ast.Expr) *comparison {
	if e.Kind() != ast.CallKind || e.AsCall().IsMemberFunction() {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	op := slices.Index(comparisons, call.FunctionName())
	if op < 0 || len(args) != 2 {
		return nil
	}
	a, b := c.term(args[0]), c.term(args[1])
	other := c.verdictOf(c.expr(e))
	if a == nil || b == nil || other == nil {
		return nil
	}
	return &comparison{op: op, a: *a, b: *b, other: other}
}

// verdict compiles the comparison, with the reads of a field beside a
// field or a literal written in place.
func (cmp *comparison) verdict() verdict {
	a, b, op, other := &cmp.a, &cmp.b, cmp.op, cmp.other
	switch {
	case a.slot >= 0 && b.slot >= 0:
		return func(in *Input) (bool, bool) {
			x, xok, known := a.recalled(in)
			if !known {
				x, xok = a.value(in)
			}
			y, yok, known := b.recalled(in)
			if !known {
				y, yok = b.value(in)
			}
			if xok && yok {
				return holds(op, x, y), true
			}
			return other(in)
		}
	case a.slot >= 0 && b.slot == -1:
		y := b.a
		return func(in *Input) (bool, bool) {
			x, xok, known := a.recalled(in)
			if !known {
				x, xok = a.value(in)
			}
			if xok {
				return holds(op, x, y), true
			}
			return other(in)
		}
	}
	return func(in *Input) (bool, bool) {
		if x, ok := a.value(in); ok {
			if y, ok := b.value(in); ok {
				return holds(op, x, y), true
			}
		}
		return other(in)
	}
}

// A term is a comparison's operand. Its commonest shapes, a literal, a
// field, or a field and a literal joined by an operator (new.total * 0.2),
// it evaluates itself as x*m + a, or x/d*m + a, where x is the field: one
// form for every shape, without a call. Each shape's form gives
// exactly the IEEE result of its operation (x - k is x + -k, k - x is
// -x + k), but for the sign of a zero, which no comparison sees. Any other
// doubles subexpression is evaluated by fn.
type term struct {
	// slot is the field's, -1 for a literal alone, -2 for fn; read reads
	// the field when no rule of the event has yet.
	slot    int
	read    doubles
	div     bool
	d, m, a float64
	fn      doubles
	// joined is a field joined with a literal, no longer a field alone.
	joined bool
}

// term returns e's term form, nil when e is not of doubles.
func (c quickCompiler) term(e ast.Expr) *term {
	if k, ok := intLiteral(e); ok {
		return &term{slot: -1, a: k}
	}
	fn := c.doubles(e)
	if fn == nil {
		return nil
	}
	switch e.Kind() {
	case ast.LiteralKind:
		k, _ := e.AsLiteral().(types.Double)
		return &term{slot: -1, a: float64(k)}
	case ast.SelectKind:
		return &term{slot: slotOf(e.AsSelect()), read: fn, m: 1}
	case ast.CallKind:
		// doubles has accepted the call and its operands' kinds; what is
		// left is to see a field beside a literal.
		args := e.AsCall().Args()
		l, r := c.term(args[0]), c.term(args[1])
		if l == nil || r == nil || l.fn != nil || r.fn != nil || l.joined || r.joined || (l.slot < 0) == (r.slot < 0) {
			return &term{slot: -2, fn: fn}
		}
		t := &term{slot: l.slot, read: l.read, m: 1, joined: true}
		k, fieldFirst := r.a, true
		if l.slot < 0 {
			t.slot, t.read, k, fieldFirst = r.slot, r.read, l.a, false
		}
		switch op := e.AsCall().FunctionName(); {
		case op == operators.Add:
			t.a = k
		case op == operators.Multiply:
			t.m = k
		case op == operators.Subtract && fieldFirst:
			t.a = -k
		case op == operators.Subtract:
			t.m, t.a = -1, k
		case op == operators.Divide && fieldFirst:
			t.div, t.d = true, k
		default:
			return &term{slot: -2, fn: fn}
		}
		return t
	}
	return &term{slot: -2, fn: fn}
}

// value evaluates the term on the event: false when its field is not a
// double there.
func (t *term) value(in *Input) (float64, bool) {
	if x, ok, known := t.recalled(in); known {
		return x, ok
	}
	switch t.slot {
	case -1:
		return t.a, true
	case -2:
		return t.fn(in)
	}
	x, ok := t.read(in)
	if t.div {
		x /= t.d
	}
	return x*t.m + t.a, ok
}

// recalled is value where the event's rules have read the term's field
// already; known is false where they have not, or the term divides.
func (t *term) recalled(in *Input) (x float64, ok, known bool) {
	if uint(t.slot) < uint(len(in.read)) {
		r := &in.read[t.slot]
		return r.v.f*t.m + t.a, r.double, r.known && !t.div
	}
	return 0, false, false
}

// comparisons are the operators holds applies, by number.
var comparisons = []string{operators.Less, operators.LessEquals, operators.Greater,
	operators.GreaterEquals, operators.Equals, operators.NotEquals}

// holds applies comparison number op to two doubles.
func holds(op int, x, y float64) bool {
	switch op {
	case 0:
		return x < y
	case 1:
		return x <= y
	case 2:
		return x > y
	case 3:
		return x >= y
	case 4:
		return x == y
	}
	return x != y
}
