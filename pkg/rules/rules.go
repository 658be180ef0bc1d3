// Package rules compiles tenants' rules into CEL programs and finds the ones
// an event concerns.
//
// A rule's condition and field expressions are CEL over three variables:
// `old` and `new`, the entity before and after the change (null on CREATE
// and DELETE respectively), and `event`, the envelope (id, entityType,
// entityId, operation, occurredAt, accountId, deviceId, correlationId).
// Env compiles and type-checks a rule once, when it is saved or loaded;
// Index keeps compiled rules by tenant, entity type and operation so that an
// event costs only the rules that watch it.
package rules

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
)

// CostLimit bounds the work one evaluation of one expression may do, so that
// no tenant's rule can stall the evaluator for everyone else.
const CostLimit = 100_000

// CompileError reports an expression that does not compile or type-check.
type CompileError struct {
	Field   string // "when" or "notification.fields.<name>"
	Message string // CEL's message, with line:column positions
}

func (e *CompileError) Error() string { return e.Field + ": " + e.Message }

// Env compiles rules.
type Env struct {
	env *cel.Env
}

// NewEnv returns the CEL environment rules are compiled in.
func NewEnv() (*Env, error) {
	object := cel.MapType(cel.StringType, cel.DynType)
	env, err := cel.NewEnv(
		cel.Variable("old", object),
		cel.Variable("new", object),
		cel.Variable("event", object),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	return &Env{env: env}, nil
}

// Rule is a compiled rule.
type Rule struct {
	ID     string
	Tenant string
	Spec   configstore.Rule
	when   cel.Program
	fields map[string]cel.Program
}

// Compile checks spec and returns it compiled. Errors in expressions are
// returned as *CompileError.
func (e *Env) Compile(tenant, id string, spec configstore.Rule) (*Rule, error) {
	if len(spec.On.EntityTypes) == 0 {
		return nil, errors.New("on.entityTypes: at least one entity type is required")
	}
	for _, op := range spec.On.Operations {
		if !slices.Contains(event.Operations, op) {
			return nil, fmt.Errorf("on.operations: %q is not one of CREATE, UPDATE, DELETE", op)
		}
	}
	r := &Rule{ID: id, Tenant: tenant, Spec: spec, fields: map[string]cel.Program{}}
	var err error
	if r.when, err = e.program("when", spec.When, true); err != nil {
		return nil, err
	}
	for name, expr := range spec.Notification.Fields {
		if r.fields[name], err = e.program("notification.fields."+name, expr, false); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (e *Env) program(field, expr string, boolean bool) (cel.Program, error) {
	if expr == "" {
		return nil, &CompileError{Field: field, Message: "expression is empty"}
	}
	ast, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		return nil, &CompileError{Field: field, Message: iss.Err().Error()}
	}
	if boolean && !ast.OutputType().IsExactType(types.BoolType) && !ast.OutputType().IsExactType(types.DynType) {
		return nil, &CompileError{Field: field, Message: fmt.Sprintf("condition must be a bool, not %s", ast.OutputType())}
	}
	prg, err := e.env.Program(ast, cel.CostLimit(CostLimit))
	if err != nil {
		return nil, &CompileError{Field: field, Message: err.Error()}
	}
	return prg, nil
}

// Input is what a rule is evaluated against.
type Input struct {
	Old, New, Event map[string]any
}

// Activation returns the CEL variables for in, to share across the rules an
// event is evaluated against.
func (in Input) Activation() interpreter.Activation {
	vars := map[string]any{"old": nullable(in.Old), "new": nullable(in.New), "event": in.Event}
	act, _ := interpreter.NewActivation(vars)
	return act
}

// nullable keeps an absent entity image null in CEL rather than a typed nil map.
func nullable(m map[string]any) any {
	if m == nil {
		return types.NullValue
	}
	return m
}

// Match reports whether the rule fires for act and, if it does, evaluates the
// notification's fields.
func (r *Rule) Match(act interpreter.Activation) (bool, map[string]any, error) {
	out, _, err := r.when.Eval(act)
	if err != nil {
		return false, nil, fmt.Errorf("rule %s: when: %w", r.ID, err)
	}
	if fired, ok := out.Value().(bool); !ok || !fired {
		return false, nil, nil
	}
	fields := make(map[string]any, len(r.fields))
	for name, prg := range r.fields {
		v, _, err := prg.Eval(act)
		if err != nil {
			return false, nil, fmt.Errorf("rule %s: field %s: %w", r.ID, name, err)
		}
		if v.Type() == types.NullType {
			// CEL's null is structpb.NullValue, which JSON encodes as 0.
			fields[name] = nil
			continue
		}
		fields[name] = v.Value()
	}
	return true, fields, nil
}

// Index holds compiled rules by tenant, entity type and operation.
type Index struct {
	mu    sync.RWMutex
	byID  map[string]*Rule   // tenant/id
	match map[string][]*Rule // tenant/entityType/operation
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byID: map[string]*Rule{}, match: map[string][]*Rule{}}
}

// Put adds r, replacing the rule with the same tenant and id.
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
	for _, et := range r.Spec.On.EntityTypes {
		for _, op := range ops {
			k := matchKey(r.Tenant, et, op)
			ix.match[k] = append(ix.match[k], r)
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
	for k, rs := range ix.match {
		rs = slices.DeleteFunc(slices.Clone(rs), func(r *Rule) bool { return r == old })
		if len(rs) == 0 {
			delete(ix.match, k)
		} else {
			ix.match[k] = rs
		}
	}
}

// Match returns the rules that watch this tenant's events of this entity type
// and operation. The slice must not be modified.
func (ix *Index) Match(tenant, entityType, operation string) []*Rule {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.match[matchKey(tenant, entityType, operation)]
}

func matchKey(tenant, entityType, op string) string { return tenant + "/" + entityType + "/" + op }
