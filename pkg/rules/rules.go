// Package rules compiles tenants' rules into CEL programs and finds the ones
// an event concerns.
//
// A rule's condition, notification fields and ordering key, and the
// notification's previous state and threshold where they depend on the
// event, are CEL over four variables: `old` and `new`, the entity before and after the change,
// `event`, the envelope (id, tenantId, entityType, entityId, operation,
// occurredAt, accountId, deviceId, correlationId), and `tenant`, the
// tenant's settings (timeZone, an IANA name, "UTC" when unset). The images are typed by
// the entity's registered schema (every version), so a misspelt field is
// refused when the rule is saved; reading any field of a null image, or a
// field an older version lacks, gives null rather than an error, which makes
// m3ter's `(old.amountSpent == null)` work on a CREATE. m3ter's AND and OR
// are accepted (see Translate), int and double mix in arithmetic and
// equality, and isnull, crossedBelow, crossedAbove and pct help with
// thresholds.
//
// A rule with `at` fires at a time rather than on a change: `at` gives
// the instant the rule's timer for an entity is due (a timestamp, or null
// for none), and `timerFor`, when given, the id of the entity whose timer
// an event sets (by default the event's own entity). Schedule evaluates
// both for an event; when the timer comes due, Evaluate judges `when`
// against the entity's latest image, with event.operation "TIMER" and the
// due time as event.occurredAt. Adding a duration to, or subtracting one
// from, a null timestamp gives null, so `new.expiresAt - duration("72h")`
// sets no timer for an entity without an end date. dayAt gives an instant
// at a local time of day some days after another, in a time zone (see
// DayAt), and activityAt the instant an event shows a SIM in use (see
// newCELEnv).
//
// A Compiler turns a rule into one set of programs per entity type it
// watches; an Index holds compiled rules by tenant, entity type and
// operation, so an event costs only the rules that watch it.
package rules

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
)

// Limits bound what one rule may ask of the evaluator.
type Limits struct {
	// MaxExpressionLength bounds each expression, in bytes.
	MaxExpressionLength int
	// MaxNesting bounds how deeply an expression may nest.
	MaxNesting int
	// MaxEstimatedCost bounds the cost CEL estimates for an expression
	// when it is compiled (lists and maps counted at MaxListSize).
	MaxEstimatedCost uint64
	// MaxListSize is the size assumed for lists and maps in estimates.
	MaxListSize uint64
	// MaxRuntimeCost bounds one evaluation of one expression; a rule that
	// hits it does not fire, and the evaluator reports it.
	MaxRuntimeCost uint64
	// MaxFields bounds a notification's computed fields.
	MaxFields int
	// MaxRulesPerTenant bounds a tenant's rules.
	MaxRulesPerTenant int
}

// DefaultLimits are the limits Herald runs with.
var DefaultLimits = Limits{
	MaxExpressionLength: 4096,
	MaxNesting:          32,
	MaxEstimatedCost:    1_000_000,
	MaxListSize:         1000,
	MaxRuntimeCost:      100_000,
	MaxFields:           32,
	MaxRulesPerTenant:   1000,
}

// CompileError reports an expression that does not compile or type-check.
type CompileError struct {
	Field   string // "when", "at", "timerFor", "orderingKey", "notification.fields.<name>", "notification.prevStateExpr" or "notification.thresholdExpr"
	Entity  string // the entity type it was checked against
	Message string // CEL's message, with line:column positions
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s (on %s): %s", e.Field, e.Entity, e.Message)
}

// SpecError reports a rule whose structure is wrong, before any CEL.
type SpecError struct {
	Field   string
	Message string
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Message }

// ErrCostLimit is wrapped by evaluation errors of rules that hit the runtime
// cost limit.
var ErrCostLimit = errors.New("rule exceeded its cost limit")

// Compiler compiles rules, keeping one CEL environment per entity shape.
type Compiler struct {
	limits Limits
	mu     sync.Mutex
	envs   map[string]*cel.Env
}

// NewCompiler returns a compiler enforcing l.
func NewCompiler(l Limits) *Compiler {
	return &Compiler{limits: l, envs: map[string]*cel.Env{}}
}

// Limits returns the compiler's limits.
func (c *Compiler) Limits() Limits { return c.limits }

func (c *Compiler) env(e Entity) (*cel.Env, error) {
	key := fmt.Sprintf("%s%v", e.Name, e.Fields)
	c.mu.Lock()
	defer c.mu.Unlock()
	if env, ok := c.envs[key]; ok {
		return env, nil
	}
	env, err := newCELEnv(e, c.limits)
	if err != nil {
		return nil, fmt.Errorf("cel environment for %s: %w", e.Name, err)
	}
	c.envs[key] = env
	return env, nil
}

// Rule is a compiled rule.
type Rule struct {
	ID     string
	Tenant string
	Spec   configstore.Rule
	// byType holds the programs of each entity type the rule watches; a
	// slice, for a rule watches few and a lookup is on every event.
	byType []typed
}

type typed struct {
	entityType string
	*programs
}

// programs returns the rule's programs for events of entityType.
func (r *Rule) programs(entityType string) (*programs, bool) {
	for _, t := range r.byType {
		if t.entityType == entityType {
			return t.programs, true
		}
	}
	return nil, false
}

type programs struct {
	when cel.Program
	// quickWhen is when's quick form; nil when it has none. bounds are
	// comparisons among its conjuncts that an index of a tenant's rules
	// can decide for many rules at once (see screen).
	quickWhen   verdict
	bounds      []bound
	fields      map[string]cel.Program
	orderingKey cel.Program
	prevState   cel.Program
	threshold   cel.Program
	at          cel.Program
	timerFor    cel.Program
	// reads is what the programs read of an event, together.
	reads Reads
}

// Compile checks spec against the entities it watches, which entities must
// hold by name, and compiles it. Errors are *SpecError or *CompileError.
func (c *Compiler) Compile(tenant, id string, spec configstore.Rule, entities map[string]Entity) (*Rule, error) {
	if err := c.checkSpec(spec); err != nil {
		return nil, err
	}
	r := &Rule{ID: id, Tenant: tenant, Spec: spec}
	for _, et := range spec.On.EntityTypes {
		e, ok := entities[et]
		if !ok {
			return nil, &SpecError{Field: "on.entityTypes", Message: fmt.Sprintf("no schema is registered for entity type %q", et)}
		}
		env, err := c.env(e)
		if err != nil {
			return nil, err
		}
		p := &programs{fields: map[string]cel.Program{}}
		// A timed rule is judged when its timer comes due, on its subject's
		// latest image: its other entity types only set timers.
		if !(spec.At != "" && et != spec.On.EntityTypes[0]) {
			if err := c.judged(env, p, et, spec); err != nil {
				return nil, err
			}
		}
		if spec.At != "" {
			if p.at, err = c.program(env, &p.reads, et, "at", spec.At, cel.TimestampType); err != nil {
				return nil, err
			}
			// Scheduling reads the event's entity id and firing sets its
			// operation and time, so a timed rule always has the envelope.
			p.reads.Event = true
		}
		if spec.TimerFor != "" {
			if p.timerFor, err = c.program(env, &p.reads, et, "timerFor", spec.TimerFor, cel.StringType); err != nil {
				return nil, err
			}
		}
		r.byType = append(r.byType, typed{et, p})
	}
	return r, nil
}

// judged compiles what decides whether and how a rule fires on an event
// of entity type et: its condition, notification and ordering key.
func (c *Compiler) judged(env *cel.Env, p *programs, et string, spec configstore.Rule) error {
	var err error
	if p.when, p.quickWhen, p.bounds, err = c.condition(env, &p.reads, et, spec.When); err != nil {
		return err
	}
	for name, expr := range spec.Notification.Fields {
		if p.fields[name], err = c.program(env, &p.reads, et, "notification.fields."+name, expr); err != nil {
			return err
		}
	}
	if spec.OrderingKey != "" {
		if p.orderingKey, err = c.program(env, &p.reads, et, "orderingKey", spec.OrderingKey, cel.StringType); err != nil {
			return err
		}
	}
	if n := spec.Notification; n.PrevStateExpr != "" {
		if p.prevState, err = c.program(env, &p.reads, et, "notification.prevStateExpr", n.PrevStateExpr, cel.StringType); err != nil {
			return err
		}
	}
	if n := spec.Notification; n.ThresholdExpr != "" {
		if p.threshold, err = c.program(env, &p.reads, et, "notification.thresholdExpr", n.ThresholdExpr, cel.DoubleType, cel.IntType); err != nil {
			return err
		}
	}
	return nil
}

func (c *Compiler) checkSpec(spec configstore.Rule) error {
	if len(spec.On.EntityTypes) == 0 {
		return &SpecError{Field: "on.entityTypes", Message: "at least one entity type is required"}
	}
	for i, op := range spec.On.Operations {
		if !slices.Contains(event.Operations, op) {
			return &SpecError{Field: fmt.Sprintf("on.operations[%d]", i), Message: fmt.Sprintf("%q is not one of CREATE, UPDATE, DELETE", op)}
		}
	}
	if len(spec.Notification.Fields) > c.limits.MaxFields {
		return &SpecError{Field: "notification.fields", Message: fmt.Sprintf("at most %d fields", c.limits.MaxFields)}
	}
	if n := spec.Notification; n.PrevState != "" && n.PrevStateExpr != "" {
		return &SpecError{Field: "notification.prevStateExpr", Message: "give prevState or prevStateExpr, not both"}
	}
	if n := spec.Notification; n.Threshold != nil && n.ThresholdExpr != "" {
		return &SpecError{Field: "notification.thresholdExpr", Message: "give threshold or thresholdExpr, not both"}
	}
	if spec.TimerFor != "" && spec.At == "" {
		return &SpecError{Field: "timerFor", Message: "only a rule with at has a timer to set"}
	}
	return nil
}

// program compiles one expression and adds what it reads to reads. want,
// when given, are the types the expression may have (a nullable wrapper of
// one, null, or dyn, also passes).
func (c *Compiler) program(env *cel.Env, reads *Reads, entity, field, expr string, want ...*cel.Type) (cel.Program, error) {
	prg, _, err := c.compile(env, reads, entity, field, expr, want...)
	return prg, err
}

// condition compiles a rule's `when`: its program, and its quick form when
// it has one (see quick).
func (c *Compiler) condition(env *cel.Env, reads *Reads, entity, expr string) (cel.Program, verdict, []bound, error) {
	prg, checked, err := c.compile(env, reads, entity, "when", expr, cel.BoolType)
	if err != nil || checked == nil {
		return prg, nil, nil, err
	}
	p, ok := env.CELTypeProvider().(*provider)
	if !ok {
		return prg, nil, nil, nil
	}
	quick, bounds := compileQuick(checked.NativeRep(), p)
	return prg, quick, bounds, nil
}

// compile is program, also returning the checked expression, nil when the
// program tracks its cost and so must be evaluated by cel-go.
func (c *Compiler) compile(env *cel.Env, reads *Reads, entity, field, expr string, want ...*cel.Type) (cel.Program, *cel.Ast, error) {
	fail := func(msg string) error { return &CompileError{Field: field, Entity: entity, Message: msg} }
	if strings.TrimSpace(expr) == "" {
		return nil, nil, fail("the expression is empty")
	}
	if len(expr) > c.limits.MaxExpressionLength {
		return nil, nil, fail(fmt.Sprintf("the expression is %d bytes; at most %d", len(expr), c.limits.MaxExpressionLength))
	}
	checked, iss := env.Compile(Translate(expr))
	if iss.Err() != nil {
		return nil, nil, fail(iss.Err().Error())
	}
	if len(want) > 0 && !typeIn(checked.OutputType(), want) {
		names := make([]string, len(want))
		for i, w := range want {
			names[i] = w.String()
		}
		return nil, nil, fail(fmt.Sprintf("must be a %s, not a %s", strings.Join(names, " or a "), checked.OutputType()))
	}
	est, err := env.EstimateCost(checked, sizeHint{c.limits.MaxListSize})
	if err != nil {
		return nil, nil, fail(err.Error())
	}
	if est.Max > c.limits.MaxEstimatedCost {
		return nil, nil, fail(fmt.Sprintf("estimated cost up to %d; at most %d", est.Max, c.limits.MaxEstimatedCost))
	}
	// OptOptimize folds what is constant when the program is made, which
	// takes a quarter off evaluating a threshold rule.
	opts := []cel.ProgramOption{cel.CustomDecoratorV2(promote), cel.EvalOptions(cel.OptOptimize)}
	// Tracking cost costs time on every evaluation; an expression whose
	// estimated worst case is within the runtime limit can never hit it.
	costed := est.Max > c.limits.MaxRuntimeCost
	if costed {
		opts = append(opts, cel.CostLimit(c.limits.MaxRuntimeCost))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, nil, fail(err.Error())
	}
	*reads = reads.Union(readsOf(checked.NativeRep().Expr()))
	if costed {
		return prg, nil, nil
	}
	return prg, checked, nil
}

// typeIn reports whether an expression of type out gives one of the types
// want, or null.
func typeIn(out *cel.Type, want []*cel.Type) bool {
	if out.IsExactType(cel.DynType) || out.IsExactType(cel.NullType) {
		return true
	}
	for _, w := range want {
		if out.IsExactType(w) || out.IsExactType(types.NewNullableType(w)) {
			return true
		}
	}
	return false
}

// sizeHint makes cost estimates count every list and map at a fixed size.
type sizeHint struct{ max uint64 }

func (h sizeHint) EstimateSize(cost.AstNode) *cost.SizeEstimate {
	return &cost.SizeEstimate{Min: 0, Max: h.max}
}

func (sizeHint) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

// Input is what a rule is evaluated against: the values an event decodes
// into. It is a CEL activation, shared by every rule an event meets.
type Input struct {
	// Old and New are the entity's images, each a generic map or a
	// *Record; nil (or a nil map or Record) when the event has none.
	Old, New any
	Event    map[string]any
	// Tenant is the tenant's settings, as `tenant` reads them: timeZone,
	// the tenant's IANA time zone ("UTC" when unset or absent).
	Tenant map[string]any

	// frame is the one execution frame the event's rules share.
	frame *interpreter.ExecutionFrame
	// read holds the image fields quick conditions have read, by slot.
	read []fieldRead
}

// eval runs prg against the input.
func (in *Input) eval(prg cel.Program) (ref.Val, error) {
	if in.frame == nil {
		var err error
		if in.frame, err = interpreter.NewExecutionFrame(in); err != nil {
			return nil, err
		}
	}
	out, _, err := prg.Eval(in.frame)
	// A program with a cost limit leaves its tracker on the frame: the
	// next program must start counting from zero.
	if in.frame.CostTracker() != nil {
		in.frame.SetCostTracker(nil)
	}
	return out, err
}

// ResolveName implements interpreter.Activation.
func (in *Input) ResolveName(name string) (any, bool) {
	switch name {
	case "old":
		return image(in.Old), true
	case "new":
		return image(in.New), true
	case "event":
		return in.Event, true
	case "tenant":
		return in.Tenant, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *Input) Parent() interpreter.Activation { return nil }

// image keeps an absent entity image null in CEL rather than a typed nil.
func image(v any) any {
	switch m := v.(type) {
	case nil:
		return types.NullValue
	case map[string]any:
		if m == nil {
			return types.NullValue
		}
	case *Record:
		if m == nil {
			return types.NullValue
		}
	}
	return v
}

// Result is what a rule made of an event.
type Result struct {
	Fired bool
	// Fields are the notification's computed fields as JSON-ready values.
	Fields map[string]any
	// OrderingKey is the rule's own ordering key; empty for the default.
	OrderingKey string
	// Notification is the rule's notification as this event makes it: the
	// rule's own, with PrevState and Threshold computed where the rule
	// gives expressions for them (and those expressions cleared).
	Notification configstore.RuleNotify
}

// Evaluate runs the rule against an event of entityType. A timed rule is
// judged only on its Subject: events of its other entity types set timers.
func (r *Rule) Evaluate(entityType string, in *Input) (Result, error) {
	b, ok := r.For(entityType)
	if !ok {
		return Result{}, nil
	}
	fired, err := b.Fires(in)
	if err != nil || !fired {
		return Result{}, err
	}
	return b.Outcome(in)
}

// Bound is a rule as it judges events of one entity type: with its
// programs for that type, found once instead of on every event.
type Bound struct {
	*Rule
	p *programs
}

// For returns the rule bound to events of entityType; false when it does
// not watch them.
func (r *Rule) For(entityType string) (Bound, bool) {
	p, ok := r.programs(entityType)
	if !ok {
		return Bound{}, false
	}
	return Bound{Rule: r, p: p}, true
}

// Fires reports whether the rule fires on the event: Evaluate's first
// half, its condition alone, which is all most rules an event meets need.
func (b Bound) Fires(in *Input) (bool, error) {
	p := b.p
	if p.when == nil {
		return false, nil
	}
	if p.quickWhen != nil {
		if fired, decided := p.quickWhen(in); decided {
			return fired, nil
		}
	}
	out, err := in.eval(p.when)
	if err != nil {
		return false, evalError(b.ID, "when", err)
	}
	fired, _ := out.Value().(bool)
	return fired, nil
}

// Outcome is Evaluate's second half: what the rule makes of an event it
// fires on.
func (b Bound) Outcome(in *Input) (Result, error) {
	r, p := b.Rule, b.p
	res := Result{Fired: true, Notification: r.Spec.Notification}
	if err := p.notification(r.ID, in, &res.Notification); err != nil {
		return Result{}, err
	}
	if len(p.fields) > 0 {
		res.Fields = make(map[string]any, len(p.fields))
		for name, prg := range p.fields {
			v, err := in.eval(prg)
			if err != nil {
				return Result{}, evalError(r.ID, "notification.fields."+name, err)
			}
			if res.Fields[name], err = jsonValue(v); err != nil {
				return Result{}, fmt.Errorf("rule %s: field %s: %w", r.ID, name, err)
			}
		}
	}
	if p.orderingKey != nil {
		v, err := in.eval(p.orderingKey)
		if err != nil {
			return Result{}, evalError(r.ID, "orderingKey", err)
		}
		res.OrderingKey, _ = v.Value().(string)
	}
	return res, nil
}

// Timed reports whether the rule fires at a time (it has `at`) rather than
// on a change.
func (r *Rule) Timed() bool { return r.Spec.At != "" }

// Subject returns the entity type the rule's timers are for: the first it
// watches.
func (r *Rule) Subject() string { return r.Spec.On.EntityTypes[0] }

// Schedule computes what an event of entityType does to the rule's timers:
// entity is the id of the Subject entity whose timer the event sets, ""
// when it touches none (timerFor gave null); due is when that timer is
// due, zero when `at` gave null (the timer is cancelled).
func (r *Rule) Schedule(entityType string, in *Input) (entity string, due time.Time, err error) {
	p, ok := r.programs(entityType)
	if !ok || p.at == nil {
		return "", time.Time{}, nil
	}
	if p.timerFor != nil {
		v, err := in.eval(p.timerFor)
		if err != nil {
			return "", time.Time{}, evalError(r.ID, "timerFor", err)
		}
		switch s := v.Value().(type) {
		case string:
			entity = s
		default:
			if v.Type() != types.NullType {
				return "", time.Time{}, fmt.Errorf("rule %s: timerFor: gave a %s, not a string", r.ID, v.Type().TypeName())
			}
		}
		if entity == "" {
			return "", time.Time{}, nil
		}
	} else {
		switch s := in.Event["entityId"].(type) {
		case string:
			entity = s
		case types.String:
			entity = string(s)
		}
		if entity == "" {
			return "", time.Time{}, fmt.Errorf("rule %s: the event has no entityId", r.ID)
		}
	}
	v, err := in.eval(p.at)
	if err != nil {
		return "", time.Time{}, evalError(r.ID, "at", err)
	}
	switch t := v.(type) {
	case types.Timestamp:
		return entity, t.Time, nil
	default:
		if v.Type() != types.NullType {
			return "", time.Time{}, fmt.Errorf("rule %s: at: gave a %s, not a timestamp", r.ID, v.Type().TypeName())
		}
	}
	return entity, time.Time{}, nil
}

// notification computes n's previous state and threshold where the rule
// gives expressions for them.
func (p *programs) notification(rule string, in *Input, n *configstore.RuleNotify) error {
	if p.prevState != nil {
		v, err := in.eval(p.prevState)
		if err != nil {
			return evalError(rule, "notification.prevStateExpr", err)
		}
		// Null and "" both say there is no previous state: CEL's
		// conditional cannot mix a string and null (`c ? "ok" : null`).
		switch s := v.Value().(type) {
		case string:
			n.PrevState = s
		default:
			if v.Type() != types.NullType {
				return fmt.Errorf("rule %s: notification.prevStateExpr: gave a %s, not a string", rule, v.Type().TypeName())
			}
			n.PrevState = ""
		}
		n.PrevStateExpr = ""
	}
	if p.threshold != nil {
		v, err := in.eval(p.threshold)
		if err != nil {
			return evalError(rule, "notification.thresholdExpr", err)
		}
		f, ok := number(v)
		switch {
		case ok && !math.IsNaN(f) && !math.IsInf(f, 0):
			n.Threshold = &f
		case ok, v.Type() == types.NullType:
			// Null, or a number JSON cannot write: no threshold.
			n.Threshold = nil
		default:
			return fmt.Errorf("rule %s: notification.thresholdExpr: gave a %s, not a number", rule, v.Type().TypeName())
		}
		n.ThresholdExpr = ""
	}
	return nil
}

func evalError(rule, field string, err error) error {
	var cancelled interpreter.EvalCancelledError
	if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
		return fmt.Errorf("rule %s: %s: %w", rule, field, ErrCostLimit)
	}
	return fmt.Errorf("rule %s: %s: %w", rule, field, err)
}

var jsonValueType = reflect.TypeFor[*structpb.Value]()

// jsonValue converts a CEL value to what encoding/json writes as the same
// JSON: null stays null, timestamps become RFC 3339 strings.
func jsonValue(v ref.Val) (any, error) {
	if v.Type() == types.NullType {
		return nil, nil
	}
	native, err := v.ConvertToNative(jsonValueType)
	if err != nil {
		return nil, err
	}
	return plain(native.(*structpb.Value)), nil
}

// plain is structpb's AsInterface, except that a non-finite number stays a
// float64 (AsInterface makes it the string "NaN" or "Infinity"), so that
// whoever writes the JSON decides what it becomes.
func plain(v *structpb.Value) any {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return k.NumberValue
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_BoolValue:
		return k.BoolValue
	case *structpb.Value_StructValue:
		m := make(map[string]any, len(k.StructValue.GetFields()))
		for name, f := range k.StructValue.GetFields() {
			m[name] = plain(f)
		}
		return m
	case *structpb.Value_ListValue:
		l := make([]any, len(k.ListValue.GetValues()))
		for i, e := range k.ListValue.GetValues() {
			l[i] = plain(e)
		}
		return l
	}
	return nil
}

// Index holds compiled rules by tenant, entity type and operation.
type Index struct {
	mu    sync.RWMutex
	byID  map[string]*Rule      // tenant/id
	match map[matchKey]Watching // tenant, entityType, operation
}

// Watching is what judges one tenant's events of one entity type and
// operation: the rules that watch them, bound to the entity type in the
// order they were indexed, and what they read of the events together.
type Watching struct {
	Rules []Bound
	Reads Reads
	// screen holds the rules' bounds, to rule out at once the rules an
	// event cannot fire.
	screen *screen
}

// Watch binds rules to events of entityType; a rule that does not watch
// the type is left out.
func Watch(entityType string, rules ...*Rule) Watching {
	var w Watching
	for _, r := range rules {
		if b, ok := r.For(entityType); ok {
			w.Rules = append(w.Rules, b)
			w.Reads = w.Reads.Union(b.p.reads)
		}
	}
	w.screen = newScreen(w.Rules)
	return w
}

// rules returns the rules of w, unbound.
func (w Watching) rules() []*Rule {
	out := make([]*Rule, len(w.Rules))
	for i, b := range w.Rules {
		out[i] = b.Rule
	}
	return out
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[string]*Rule{}, match: map[matchKey]Watching{}}
}

// Put adds r, replacing the rule with the same tenant and id. A disabled
// rule is removed instead.
func (ix *Index) Put(r *Rule) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.remove(r.Tenant, r.ID)
	if !r.Spec.IsEnabled() {
		return
	}
	ix.byID[r.Tenant+"/"+r.ID] = r
	ops := r.Spec.On.Operations
	if len(ops) == 0 {
		ops = event.Operations
	}
	// A DELETE cancels a timed rule's timer, whatever operations its
	// condition is judged on.
	if r.Timed() && !slices.Contains(ops, "DELETE") {
		ops = append(slices.Clip(ops), "DELETE")
	}
	for _, et := range r.Spec.On.EntityTypes {
		for _, op := range ops {
			k := matchKey{r.Tenant, et, op}
			ix.match[k] = Watch(et, append(ix.match[k].rules(), r)...)
		}
	}
}

// Remove drops the rule tenant/id.
func (ix *Index) Remove(tenant, id string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.remove(tenant, id)
}

func (ix *Index) remove(tenant, id string) {
	old, ok := ix.byID[tenant+"/"+id]
	if !ok {
		return
	}
	delete(ix.byID, tenant+"/"+id)
	for _, et := range old.Spec.On.EntityTypes {
		for _, op := range event.Operations {
			k := matchKey{tenant, et, op}
			rs := slices.DeleteFunc(ix.match[k].rules(), func(r *Rule) bool { return r == old })
			if len(rs) == 0 {
				delete(ix.match, k)
			} else {
				ix.match[k] = Watch(et, rs...)
			}
		}
	}
}

// Rule returns the enabled rule tenant/id, or nil.
func (ix *Index) Rule(tenant, id string) *Rule {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.byID[tenant+"/"+id]
}

// Watching returns the rules that watch this tenant's events of this
// entity type and operation, bound to the entity type, and what they read
// of the event together. It must not be modified.
func (ix *Index) Watching(tenant, entityType, operation string) Watching {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.match[matchKey{tenant, entityType, operation}]
}

type matchKey struct{ tenant, entityType, operation string }

// Watches reports whether the rule is evaluated for events of this entity
// type and operation.
func (r *Rule) Watches(entityType, operation string) bool {
	ops := r.Spec.On.Operations
	return slices.Contains(r.Spec.On.EntityTypes, entityType) && (len(ops) == 0 || slices.Contains(ops, operation))
}
