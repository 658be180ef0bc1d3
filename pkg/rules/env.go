package rules

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	// Rules place times of day in tenants' zones; images built from
	// scratch have no zone database of their own.
	_ "time/tzdata"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/env"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
)

// EventType is the CEL type of the `event` variable.
const EventType = "herald.Event"

// eventFields are the envelope fields rules read through `event`, from the
// decoded envelope itself.
var eventFields = []Field{
	{Name: "id", Type: "string", key: "eventId", cel: types.StringType},
	{Name: "eventId", Type: "string", cel: types.StringType},
	{Name: "tenantId", Type: "string", cel: types.StringType},
	{Name: "entityType", Type: "string", cel: types.StringType},
	{Name: "entityId", Type: "string", cel: types.StringType},
	{Name: "operation", Type: "string", cel: types.StringType},
	{Name: "occurredAt", Type: "timestamp", cel: types.TimestampType},
	{Name: "accountId", Type: "string", Nullable: true, cel: types.NewNullableType(types.StringType)},
	{Name: "deviceId", Type: "string", Nullable: true, cel: types.NewNullableType(types.StringType)},
	{Name: "correlationId", Type: "string", Nullable: true, cel: types.NewNullableType(types.StringType)},
}

// TenantType is the CEL type of the `tenant` variable.
const TenantType = "herald.Tenant"

// tenantFields are the tenant settings rules read through `tenant`.
var tenantFields = []Field{
	{Name: "timeZone", Type: "string", cel: types.StringType},
}

// entityTypeName is the CEL type of an entity's old and new images.
func entityTypeName(entity string) string { return "herald.entities." + entity }

// provider declares the entity's records to CEL as object types whose
// fields read from the generic maps Avro decodes into. Reading a field of a
// null or absent record, or a field the record lacks, gives null.
type provider struct {
	types.Provider
	records map[string]map[string]*types.FieldType
}

func newProvider(base types.Provider, e Entity) *provider {
	p := &provider{Provider: base, records: map[string]map[string]*types.FieldType{}}
	p.declare(EventType, eventFields)
	p.declare(TenantType, tenantFields)
	p.declare(entityTypeName(e.Name), e.Fields)
	// A tenant that has not set its zone is in UTC.
	p.records[TenantType]["timeZone"] = &types.FieldType{
		Type:  types.StringType,
		IsSet: func(any) bool { return true },
		GetFrom: func(obj any) (any, error) {
			switch z := field(obj, "timeZone").(type) {
			case string:
				if z != "" {
					return z, nil
				}
			case types.String:
				if z != "" {
					return z, nil
				}
			}
			return "UTC", nil
		},
	}
	return p
}

func (p *provider) declare(name string, fields []Field) {
	fts := make(map[string]*types.FieldType, len(fields))
	for _, f := range fields {
		fts[f.Name] = fieldType(f)
		if f.record != "" {
			p.declare(f.record, f.Fields)
		}
		for it := f.Items; it != nil; it = it.Items {
			if it.record != "" {
				p.declare(it.record, it.Fields)
			}
		}
	}
	p.records[name] = fts
}

func fieldType(f Field) *types.FieldType {
	name := f.Name
	if f.key != "" {
		name = f.key
	}
	return &types.FieldType{
		Type: f.cel,
		IsSet: func(obj any) bool {
			return field(obj, name) != nil
		},
		GetFrom: func(obj any) (any, error) {
			if v := field(obj, name); v != nil {
				return v, nil
			}
			return types.NullValue, nil
		},
	}
}

// Record is an entity image decoded only for the fields rules read: their
// names, sorted, and their values, as CEL values (see Value), in the same
// order, nil for null. A field it does not name reads as null.
type Record struct {
	Names  []string
	Values []any
}

// field returns the field called name of a decoded record, a generic map
// or a Record; nil when it has none.
func field(obj any, name string) any {
	switch r := obj.(type) {
	case map[string]any:
		return r[name]
	case *Record:
		if len(r.Names) > 8 {
			if i := sort.SearchStrings(r.Names, name); i < len(r.Names) && r.Names[i] == name {
				return r.Values[i]
			}
			return nil
		}
		for i, n := range r.Names {
			if n == name {
				return r.Values[i]
			}
		}
	}
	return nil
}

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := p.records[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Provider.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	fts, ok := p.records[name]
	if !ok {
		return p.Provider.FindStructFieldNames(name)
	}
	names := make([]string, 0, len(fts))
	for n := range fts {
		names = append(names, n)
	}
	return names, true
}

func (p *provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	fts, ok := p.records[name]
	if !ok {
		return p.Provider.FindStructFieldType(name, field)
	}
	ft, ok := fts[field]
	return ft, ok
}

// newCELEnv returns the environment a rule on entity e compiles in.
func newCELEnv(e Entity, l Limits) (*cel.Env, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	entity := cel.ObjectType(entityTypeName(e.Name))
	number := []*cel.Type{cel.IntType, cel.DoubleType}
	opts := []cel.EnvOption{
		cel.CustomTypeProvider(newProvider(reg, e)),
		cel.CustomTypeAdapter(reg),
		cel.Variable("old", entity),
		cel.Variable("new", entity),
		cel.Variable("event", cel.ObjectType(EventType)),
		cel.Variable("tenant", cel.ObjectType(TenantType)),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(l.MaxExpressionLength),
		cel.ParserRecursionLimit(l.MaxNesting),
		cel.Function("isnull",
			cel.Overload("isnull_dyn", []*cel.Type{cel.DynType}, cel.BoolType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return types.Bool(v == types.NullValue || v.Type() == types.NullType) }))),
		cel.Function("crossedBelow",
			cel.Overload("crossed_below", []*cel.Type{cel.DynType, cel.DynType, cel.DynType}, cel.BoolType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val { return crossed(args, false) }))),
		cel.Function("crossedAbove",
			cel.Overload("crossed_above", []*cel.Type{cel.DynType, cel.DynType, cel.DynType}, cel.BoolType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val { return crossed(args, true) }))),
		cel.Function("pct",
			cel.Overload("pct_dyn_dyn", []*cel.Type{cel.DynType, cel.DynType}, cel.DynType,
				cel.BinaryBinding(pct))),
		cel.Function("dayAt",
			cel.Overload("day_at_timestamp_int_string_string",
				[]*cel.Type{cel.NullableType(cel.TimestampType), cel.IntType, cel.StringType, cel.StringType}, cel.NullableType(cel.TimestampType),
				cel.FunctionBinding(newZones().dayAt))),
		cel.Macros(cel.GlobalMacro("activityAt", 3, activityAt(hasField(e, "lastActivityAt", "timestamp")))),
	}
	// Mixed int and double arithmetic and equality, as in m3ter's
	// calculations (`new.amount*100` with amount a double): declared here
	// for the checker, and computed by promoting the int (see promote).
	for _, op := range []string{operators.Add, operators.Subtract, operators.Multiply, operators.Divide} {
		opts = append(opts, cel.Function(op,
			cel.Overload(overloadID(op, "int_double"), number, cel.DoubleType),
			cel.Overload(overloadID(op, "double_int"), []*cel.Type{cel.DoubleType, cel.IntType}, cel.DoubleType)))
	}
	// Equality is CEL's heterogeneous equality (3 == 3.0) for any two
	// values; the standard declaration, (A, A), would refuse `new.amount ==
	// 100` with amount a double at check time.
	opts = append(opts,
		cel.Function(operators.Equals, cel.Overload("herald_equals", []*cel.Type{cel.DynType, cel.DynType}, cel.BoolType,
			cel.BinaryBinding(func(a, b ref.Val) ref.Val { return a.Equal(b) }))),
		cel.Function(operators.NotEquals, cel.Overload("herald_not_equals", []*cel.Type{cel.DynType, cel.DynType}, cel.BoolType,
			cel.BinaryBinding(func(a, b ref.Val) ref.Val {
				eq := a.Equal(b)
				if b, ok := eq.(types.Bool); ok {
					return !b
				}
				return eq
			}))),
	)
	std := cel.StdLib(cel.StdLibSubset(&env.LibrarySubset{ExcludeFunctions: []*env.Function{
		{Name: operators.Equals}, {Name: operators.NotEquals},
	}}))
	return cel.NewCustomEnv(append([]cel.EnvOption{std}, opts...)...)
}

func overloadID(op, suffix string) string {
	return "herald_" + strings.Trim(op, "_!") + "_" + suffix
}

// number returns v as a float64, or false when it is not a number.
func number(v ref.Val) (float64, bool) {
	switch n := v.(type) {
	case types.Double:
		return float64(n), true
	case types.Int:
		return float64(n), true
	case types.Uint:
		return float64(n), true
	}
	return 0, false
}

// crossed reports whether a value went from one side of a threshold to the
// other: below means old ≥ threshold > new, above means old < threshold ≤
// new. A null old value (the entity is new) counts as on the far side, so
// an entity created past the threshold has crossed it. Once crossed, the
// rule fires again only after the value has gone back.
func crossed(args []ref.Val, above bool) ref.Val {
	nw, ok1 := number(args[1])
	t, ok2 := number(args[2])
	if !ok1 || !ok2 {
		return types.False
	}
	old, hasOld := number(args[0])
	if above {
		return types.Bool(nw >= t && (!hasOld || old < t))
	}
	return types.Bool(nw < t && (!hasOld || old >= t))
}

// pct returns part as a percentage of whole, or null when either is null or
// whole is zero.
func pct(part, whole ref.Val) ref.Val {
	p, ok1 := number(part)
	w, ok2 := number(whole)
	if !ok1 || !ok2 || w == 0 {
		return types.NullValue
	}
	r := p * 100 / w
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return types.NullValue
	}
	return types.Double(r)
}

// hasField reports whether e has a field called name of type typ.
func hasField(e Entity, name, typ string) bool {
	return slices.ContainsFunc(e.Fields, func(f Field) bool { return f.Name == name && f.Type == typ })
}

// activityAt expands activityAt(old, new, event), the instant an event
// shows a SIM in use, for an entity: one that records its last activity
// (a Sim's lastActivityAt) gives that, or when the event occurred where it
// is unset; any other gives when the event occurred if it concerns a
// device (event.deviceId, the SIM's iccid), else null.
func activityAt(recordsActivity bool) cel.MacroFactory {
	return func(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *common.Error) {
		nw, ev := args[1], args[2]
		if recordsActivity {
			last := eh.NewSelect(nw, "lastActivityAt")
			return eh.NewCall(operators.Conditional,
				eh.NewCall(operators.NotEquals, last, eh.NewLiteral(types.NullValue)),
				eh.Copy(last), eh.NewSelect(ev, "occurredAt")), nil
		}
		return eh.NewCall(operators.Conditional,
			eh.NewCall(operators.NotEquals, eh.NewSelect(ev, "deviceId"), eh.NewLiteral(types.NullValue)),
			eh.NewSelect(eh.Copy(ev), "occurredAt"), eh.NewLiteral(types.NullValue)), nil
	}
}

// zones caches the time zones an environment's rules use: loading one
// reads the zone database.
type zones struct {
	mu     sync.RWMutex
	byName map[string]*time.Location
}

func newZones() *zones { return &zones{byName: map[string]*time.Location{}} }

func (z *zones) load(name string) (*time.Location, error) {
	z.mu.RLock()
	loc, ok := z.byName[name]
	z.mu.RUnlock()
	if ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	z.mu.Lock()
	z.byName[name] = loc
	z.mu.Unlock()
	return loc, nil
}

// dayAt is CEL's dayAt(ts, days, hhmm, zone): see DayAt. A null ts gives
// null.
func (z *zones) dayAt(args ...ref.Val) ref.Val {
	if args[0].Type() == types.NullType {
		return types.NullValue
	}
	ts, ok1 := args[0].(types.Timestamp)
	days, ok2 := args[1].(types.Int)
	hhmm, ok3 := args[2].(types.String)
	zone, ok4 := args[3].(types.String)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return types.NewErr("dayAt: wants a timestamp, an int and two strings")
	}
	loc, err := z.load(string(zone))
	if err != nil {
		return types.NewErr("dayAt: unknown time zone %q", string(zone))
	}
	t, err := DayAt(ts.Time, int(days), string(hhmm), loc)
	if err != nil {
		return types.NewErr("dayAt: %v", err)
	}
	return types.Timestamp{Time: t}
}

// DayAt returns the instant at local time hhmm ("HH:MM", 24-hour) in loc on
// the calendar day days days after t's date in loc. The local time holds
// across a change of UTC offset between the two days; a local time that
// such a change skips or repeats gives one of the instants it could be.
func DayAt(t time.Time, days int, hhmm string, loc *time.Location) (time.Time, error) {
	h, m, ok := clock(hhmm)
	if !ok {
		return time.Time{}, fmt.Errorf("%q is not a time of day as HH:MM", hhmm)
	}
	y, mo, d := t.In(loc).Date()
	return time.Date(y, mo, d+days, h, m, 0, 0, loc).UTC(), nil
}

// clock reads "HH:MM", 00:00 to 23:59.
func clock(s string) (h, m int, ok bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, 0, false
		}
	}
	h, m = int(s[0]-'0')*10+int(s[1]-'0'), int(s[3]-'0')*10+int(s[4]-'0')
	return h, m, h < 24 && m < 60
}

// promote replaces each arithmetic call with one that turns an int operand
// into a double when the other is a double, then applies the operator as
// CEL's standard library does.
func promote(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || len(call.Args()) != 2 {
		return i, nil
	}
	switch call.OverloadID() {
	case overloads.AddTimestampDuration, overloads.AddDurationTimestamp, overloads.SubtractTimestampDuration:
		// A date the entity has not set, moved by a duration, is still
		// not set: `new.expiresAt - duration("72h")` is null, not an error.
		add := call.Function() == operators.Add
		args := call.Args()
		return &promoted{InterpretableCall: call, lhs: args[0], rhs: args[1], apply: func(a, b ref.Val) ref.Val {
			switch {
			case a.Type() == types.NullType || b.Type() == types.NullType:
				return types.NullValue
			case add:
				return withTrait[traits.Adder](a, b, traits.Adder.Add)
			}
			return withTrait[traits.Subtractor](a, b, traits.Subtractor.Subtract)
		}}, nil
	}
	// A call the checker resolved to one standard overload (double *
	// double) has operands of one type already; only the mixed overloads
	// declared here, and calls left to dispatch at run time, need it.
	if id := call.OverloadID(); id != "" && id != call.Function() && !strings.HasPrefix(id, "herald_") {
		return i, nil
	}
	var apply func(a, b ref.Val) ref.Val
	switch call.Function() {
	case operators.Add:
		apply = func(a, b ref.Val) ref.Val { return withTrait[traits.Adder](a, b, traits.Adder.Add) }
	case operators.Subtract:
		apply = func(a, b ref.Val) ref.Val { return withTrait[traits.Subtractor](a, b, traits.Subtractor.Subtract) }
	case operators.Multiply:
		apply = func(a, b ref.Val) ref.Val { return withTrait[traits.Multiplier](a, b, traits.Multiplier.Multiply) }
	case operators.Divide:
		apply = func(a, b ref.Val) ref.Val { return withTrait[traits.Divider](a, b, traits.Divider.Divide) }
	default:
		return i, nil
	}
	args := call.Args()
	return &promoted{InterpretableCall: call, lhs: args[0], rhs: args[1], apply: apply}, nil
}

func withTrait[T any](a, b ref.Val, op func(T, ref.Val) ref.Val) ref.Val {
	a, b = widen(a, b)
	t, ok := a.(T)
	if !ok {
		return types.MaybeNoSuchOverloadErr(a)
	}
	return op(t, b)
}

// widen turns an Int into a Double when the other operand is a Double.
func widen(a, b ref.Val) (ref.Val, ref.Val) {
	ai, aInt := a.(types.Int)
	bi, bInt := b.(types.Int)
	_, aDouble := a.(types.Double)
	_, bDouble := b.(types.Double)
	switch {
	case aInt && bDouble:
		return types.Double(ai), b
	case aDouble && bInt:
		return a, types.Double(bi)
	}
	return a, b
}

type promoted struct {
	interpreter.InterpretableCall
	lhs, rhs interpreter.InterpretableV2
	apply    func(a, b ref.Val) ref.Val
}

func (p *promoted) Eval(act interpreter.Activation) ref.Val {
	a := p.lhs.Eval(act)
	if types.IsUnknownOrError(a) {
		return a
	}
	b := p.rhs.Eval(act)
	if types.IsUnknownOrError(b) {
		return b
	}
	return p.apply(a, b)
}

func (p *promoted) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	a := p.lhs.Exec(frame)
	if types.IsUnknownOrError(a) {
		return a
	}
	b := p.rhs.Exec(frame)
	if types.IsUnknownOrError(b) {
		return b
	}
	return p.apply(a, b)
}

// Reads is what a rule's expressions read of an event, so that an event
// need be decoded only as far as its rules look.
type Reads struct {
	// Fields are the fields of the old and new images read by name, sorted.
	Fields []string
	// Whole reports that an image is used otherwise than by its fields
	// (compared, passed to a function), so all of it is needed.
	Whole bool
	// Event reports that the envelope is read through `event`.
	Event bool
	// Tenant reports that the tenant's settings are read through `tenant`.
	Tenant bool
	// key names Fields in one string.
	key string
}

// Key names the image fields Reads holds: equal keys, equal fields.
func (r Reads) Key() string { return r.key }

// Union returns what r and o read together.
func (r Reads) Union(o Reads) Reads {
	u := Reads{Whole: r.Whole || o.Whole, Event: r.Event || o.Event, Tenant: r.Tenant || o.Tenant, Fields: r.Fields}
	for _, f := range o.Fields {
		if _, found := slices.BinarySearch(u.Fields, f); !found {
			u.Fields = slices.Insert(slices.Clip(u.Fields), sort.SearchStrings(u.Fields, f), f)
		}
	}
	u.key = strings.Join(u.Fields, ",")
	return u
}

// readsOf returns what a checked expression reads: a field selected from
// `old` or `new` is read by name; `old` or `new` used in any other way is
// read whole.
func readsOf(expr ast.Expr) Reads {
	var r Reads
	selected := map[int64]bool{}
	ast.PreOrderVisit(expr, ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.SelectKind:
			s := e.AsSelect()
			if op := s.Operand(); op.Kind() == ast.IdentKind && isImage(op.AsIdent()) {
				selected[op.ID()] = true
				r = r.Union(Reads{Fields: []string{s.FieldName()}})
			}
		case ast.IdentKind:
			switch name := e.AsIdent(); {
			case isImage(name) && !selected[e.ID()]:
				r.Whole = true
			case name == "event":
				r.Event = true
			case name == "tenant":
				r.Tenant = true
			}
		}
	}))
	return r
}

func isImage(name string) bool { return name == "old" || name == "new" }

// Value returns a decoded scalar as the CEL value a rule reads it as, so
// that an event read by many rules converts it once; maps, lists and
// anything else are returned as they are, for CEL to convert as it reads
// them.
func Value(v any) any {
	switch v.(type) {
	case string, float64, float32, int64, int32, int, bool, time.Time, time.Duration, []byte:
		return types.DefaultTypeAdapter.NativeToValue(v)
	}
	return v
}

// ValueOf is Value of what v holds, without boxing a scalar on the way:
// nil for a nil pointer or interface.
func ValueOf(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Float64, reflect.Float32:
		return types.Double(v.Float())
	case reflect.Int64, reflect.Int32:
		return types.Int(v.Int())
	case reflect.String:
		return types.String(v.String())
	case reflect.Bool:
		return types.Bool(v.Bool())
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Pointer {
			return ValueOf(v.Elem())
		}
	}
	return Value(v.Interface())
}
