// Package catalog holds Herald's ready-made notification types: the
// notifications Totogi, LogiSense, Truphone and m3ter offer their
// customers, as rules a tenant installs with a few parameters instead of
// writing the CEL by hand.
//
// An Entry describes one type: the vendor's name for it (and the state
// names its notifications carry), what it fires on and what it leaves out
// (its exclusions), and its parameters with their defaults and bounds.
// Entry.Rule checks parameter values, against the watched entity's schema
// where a parameter names one of a field's values, and builds the
// configstore.Rule the entry stands for; the admin API then saves that rule
// through the same checks as a rule a tenant writes, so an installed entry
// is an ordinary rule from then on.
//
// Most entries fire on a change (an entity's old and new images, as every
// rule does). Some fire at a time instead, listed with the trigger
// Scheduled: their rules carry `at`, which sets a timer for the entity on
// each event (an expiry warning a set time before the end date, an invoice
// overdue once its grace days have run), and their condition is judged on
// the entity's latest state when the timer comes due, so that a plan
// renewed or an invoice paid meanwhile is not notified. DormantSim's timer
// is the SIM's, set by any event that concerns the SIM (see its entry).
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/rules"
)

// Vendors whose notification types the catalog holds.
const (
	Totogi    = "Totogi"
	LogiSense = "LogiSense"
	Truphone  = "Truphone"
	M3ter     = "m3ter"
)

// Trigger says what makes an entry fire.
type Trigger string

// Triggers.
const (
	// Change entries fire on an entity-change event.
	Change Trigger = "change"
	// Scheduled entries fire at a time computed from an entity's fields.
	Scheduled Trigger = "scheduled"
)

// ParamType is the type of a parameter's value.
type ParamType string

// Parameter types.
const (
	// Number is any JSON number.
	Number ParamType = "number"
	// Integer is a JSON number without a fractional part.
	Integer ParamType = "integer"
	// String is a JSON string.
	String ParamType = "string"
	// Boolean is true or false.
	Boolean ParamType = "boolean"
	// Expression is a JSON string holding a condition over old, new and
	// event, in CEL or in m3ter's calculation spelling.
	Expression ParamType = "expression"
)

// Parameter is one value an entry is installed with.
type Parameter struct {
	Name        string
	Type        ParamType
	Description string
	// Default is the value when none is given; nil makes the parameter
	// required. Numbers are float64, integers int64, booleans bool.
	Default any
	// Minimum, ExclusiveMinimum and Maximum bound a number or an integer.
	Minimum, ExclusiveMinimum, Maximum *float64
	// Enum lists the values a string may take.
	Enum []string
	// Pattern is a regular expression a non-empty string must match.
	Pattern string
}

// Required reports whether the parameter has no default.
func (p Parameter) Required() bool { return p.Default == nil }

// MarshalJSON writes the parameter as GET /v1/catalog lists it.
func (p Parameter) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name             string    `json:"name"`
		Type             ParamType `json:"type"`
		Description      string    `json:"description"`
		Required         bool      `json:"required"`
		Default          any       `json:"default"`
		Minimum          *float64  `json:"minimum,omitempty"`
		ExclusiveMinimum *float64  `json:"exclusiveMinimum,omitempty"`
		Maximum          *float64  `json:"maximum,omitempty"`
		Enum             []string  `json:"enum,omitempty"`
		Pattern          string    `json:"pattern,omitempty"`
	}{p.Name, p.Type, p.Description, p.Required(), p.Default, p.Minimum, p.ExclusiveMinimum, p.Maximum, p.Enum, p.Pattern})
}

// Notification is the notification an entry's rule emits.
type Notification struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// Fields names the computed fields the notification carries.
	Fields []string `json:"fields,omitempty"`
}

// On says which events an entry watches. An entry whose EntityTypes is
// empty watches the entity type its entityType parameter names.
type On struct {
	EntityTypes []string `json:"entityTypes"`
	Operations  []string `json:"operations,omitempty"`
}

// Entry is one ready-made notification type.
type Entry struct {
	// Name is the vendor's name for the notification where it has one; it
	// names the entry in the API and is the default name of its rule.
	Name string `json:"name"`
	// Title is how the vendor's documentation calls it.
	Title        string       `json:"title"`
	Vendor       string       `json:"vendor"`
	Description  string       `json:"description"`
	Trigger      Trigger      `json:"trigger"`
	On           On           `json:"on"`
	Notification Notification `json:"notification"`
	Parameters   []Parameter  `json:"parameters"`
	// Exclusions are the changes that look like the entry's but on which
	// it does not fire.
	Exclusions []string `json:"exclusions"`

	// build returns the rule's parts from checked parameter values.
	build func(Values) parts
	// check refuses combinations of values that each pass on their own;
	// given holds the values the installer gave, before defaults.
	check func(v Values, given map[string]any) error
	// sources names the parameter a rule field is made from, where a
	// problem with that field is a problem with the parameter.
	sources map[string]string
	// values names, for a parameter that stands for a value of a field of
	// the watched entity, that field: where the entity's schema lists the
	// field's values (an enum), the parameter must be one of them.
	values map[string]string
}

// parts are what an entry's parameters decide about its rule.
type parts struct {
	entityTypes []string // when the entity type is a parameter
	when        string
	// at and timerFor are a scheduled entry's: when the entity's timer is
	// due, and whose timer an event sets.
	at, timerFor string
	threshold    *float64
	fields       map[string]string
	// prevState is the notification's previous state where it is the same
	// for every event; prevStateExpr and thresholdExpr compute them per
	// event.
	prevState     string
	prevStateExpr string
	thresholdExpr string
}

// Values are an entry's parameter values, defaults filled in: float64 for
// numbers, int64 for integers, string for strings and expressions.
type Values map[string]any

// Number returns a number parameter's value.
func (v Values) Number(name string) float64 { f, _ := v[name].(float64); return f }

// Int returns an integer parameter's value.
func (v Values) Int(name string) int64 { n, _ := v[name].(int64); return n }

// String returns a string or expression parameter's value.
func (v Values) String(name string) string { s, _ := v[name].(string); return s }

// Bool returns a boolean parameter's value.
func (v Values) Bool(name string) bool { b, _ := v[name].(bool); return b }

// ParameterError reports a parameter value an entry refuses.
type ParameterError struct {
	Parameter string
	Message   string
}

func (e *ParameterError) Error() string { return "parameter " + e.Parameter + ": " + e.Message }

// Resolve checks given parameter values against the entry's parameters and
// fills in defaults. Numbers may be float64, int, int64 or json.Number.
// The error is a *ParameterError naming the first parameter refused.
func (e *Entry) Resolve(given map[string]any) (Values, error) {
	unknown := make([]string, 0)
	for name := range given {
		if !slices.ContainsFunc(e.Parameters, func(p Parameter) bool { return p.Name == name }) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, &ParameterError{Parameter: unknown[0], Message: e.unknownMessage()}
	}
	vals := make(Values, len(e.Parameters))
	for _, p := range e.Parameters {
		raw, ok := given[p.Name]
		if !ok || raw == nil {
			if p.Required() {
				return nil, &ParameterError{Parameter: p.Name, Message: "required"}
			}
			vals[p.Name] = p.Default
			continue
		}
		v, msg := p.coerce(raw)
		if msg != "" {
			return nil, &ParameterError{Parameter: p.Name, Message: msg}
		}
		vals[p.Name] = v
	}
	if e.check != nil {
		if err := e.check(vals, given); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

func (e *Entry) unknownMessage() string {
	if len(e.Parameters) == 0 {
		return e.Name + " takes no parameters"
	}
	names := make([]string, len(e.Parameters))
	for i, p := range e.Parameters {
		names[i] = p.Name
	}
	return fmt.Sprintf("not a parameter of %s, which takes %s", e.Name, strings.Join(names, ", "))
}

// coerce returns raw as the parameter's type, or why it cannot be.
func (p Parameter) coerce(raw any) (any, string) {
	switch p.Type {
	case Number, Integer:
		f, ok := toFloat(raw)
		if !ok {
			return nil, "must be a number"
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, "must be a finite number"
		}
		if msg := p.bounds(f); msg != "" {
			return nil, msg
		}
		if p.Type == Number {
			return f, ""
		}
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, "must be a whole number"
		}
		return int64(f), ""
	case String, Expression:
		s, ok := raw.(string)
		if !ok {
			return nil, "must be a string"
		}
		if len(p.Enum) > 0 && !slices.Contains(p.Enum, s) {
			return nil, "must be one of " + strings.Join(p.Enum, ", ")
		}
		if p.Pattern != "" && s != "" && !regexp.MustCompile(p.Pattern).MatchString(s) {
			return nil, "must match " + p.Pattern
		}
		return s, ""
	case Boolean:
		b, ok := raw.(bool)
		if !ok {
			return nil, "must be true or false"
		}
		return b, ""
	}
	return nil, fmt.Sprintf("has the unknown type %q", p.Type)
}

func (p Parameter) bounds(f float64) string {
	switch {
	case p.Minimum != nil && f < *p.Minimum:
		return "must be at least " + formatNumber(*p.Minimum)
	case p.ExclusiveMinimum != nil && f <= *p.ExclusiveMinimum:
		return "must be above " + formatNumber(*p.ExclusiveMinimum)
	case p.Maximum != nil && f > *p.Maximum:
		return "must be at most " + formatNumber(*p.Maximum)
	}
	return ""
}

func toFloat(raw any) (float64, bool) {
	switch n := raw.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		// Out of range parses as an infinity, which is then refused as such.
		return f, err == nil || errors.Is(err, strconv.ErrRange)
	}
	return 0, false
}

// Rule checks the parameter values given and returns the rule the entry
// stands for, named after the entry and without destinations. entities
// are the fields of the entity types the entry watches, as their
// registered schemas give them (see NeedsSchema); a parameter that names a
// value of an enum field must be one of its symbols. Errors are
// *ParameterError.
func (e *Entry) Rule(given map[string]any, entities map[string]rules.Entity) (configstore.Rule, error) {
	vals, err := e.Resolve(given)
	if err != nil {
		return configstore.Rule{}, err
	}
	if err := e.checkValues(vals, entities); err != nil {
		return configstore.Rule{}, err
	}
	p := e.build(vals)
	entityTypes := e.On.EntityTypes
	if len(p.entityTypes) > 0 {
		entityTypes = p.entityTypes
	}
	return configstore.Rule{
		Name:     e.Name,
		On:       configstore.RuleOn{EntityTypes: slices.Clone(entityTypes), Operations: slices.Clone(e.On.Operations)},
		When:     p.when,
		At:       p.at,
		TimerFor: p.timerFor,
		Notification: configstore.RuleNotify{
			Name:          e.Notification.Name,
			State:         e.Notification.State,
			PrevState:     p.prevState,
			PrevStateExpr: p.prevStateExpr,
			Threshold:     p.threshold,
			ThresholdExpr: p.thresholdExpr,
			Fields:        p.fields,
		},
	}, nil
}

// NeedsSchema reports whether Rule checks parameters against the schemas
// of the entity types the entry watches, which the caller must then pass.
func (e *Entry) NeedsSchema() bool { return len(e.values) > 0 }

// checkValues refuses a parameter standing for a value of an enum field
// that is not one of the field's symbols. A field the schema types as a
// free string has no list to check against.
func (e *Entry) checkValues(vals Values, entities map[string]rules.Entity) error {
	for _, param := range slices.Sorted(maps.Keys(e.values)) {
		v := vals.String(param)
		if v == "" {
			continue
		}
		field := e.values[param]
		for _, et := range e.On.EntityTypes {
			ent, ok := entities[et]
			if !ok {
				return fmt.Errorf("catalog entry %s: no fields given for entity type %s", e.Name, et)
			}
			i := slices.IndexFunc(ent.Fields, func(f rules.Field) bool { return f.Name == field })
			if i < 0 {
				return &ParameterError{Parameter: param, Message: fmt.Sprintf("the %s schema has no field %s", et, field)}
			}
			if syms := ent.Fields[i].Symbols; len(syms) > 0 && !slices.Contains(syms, v) {
				return &ParameterError{Parameter: param,
					Message: fmt.Sprintf("must be a value of %s.%s: one of %s", et, field, strings.Join(syms, ", "))}
			}
		}
	}
	return nil
}

// ParameterFor returns the parameter a rule field is made from, for
// entries whose parameters are spliced into the rule unchecked (an entity
// type, a calculation): a problem the rule's compiler finds in that field
// is a problem with the parameter.
func (e *Entry) ParameterFor(ruleField string) (string, bool) {
	p, ok := e.sources[ruleField]
	return p, ok
}

// Catalog is the set of entries.
type Catalog struct {
	entries []*Entry
	byName  map[string]*Entry
}

// New returns the catalog: Totogi's, LogiSense's, Truphone's and m3ter's
// notification types, in that order.
func New() *Catalog {
	var all []*Entry
	for _, vendor := range [][]*Entry{totogi(), logiSense(), truphone(), m3ter()} {
		all = append(all, vendor...)
	}
	c := &Catalog{entries: all, byName: make(map[string]*Entry, len(all))}
	for _, e := range all {
		if e.Parameters == nil {
			e.Parameters = []Parameter{} // listed as [], not null
		}
		if e.Exclusions == nil {
			e.Exclusions = []string{}
		}
		c.byName[e.Name] = e
	}
	return c
}

// Entries returns every entry.
func (c *Catalog) Entries() []*Entry { return c.entries }

// Lookup returns the entry named name.
func (c *Catalog) Lookup(name string) (*Entry, bool) {
	e, ok := c.byName[name]
	return e, ok
}

// celString returns s as a CEL string literal.
func celString(s string) string { return strconv.Quote(s) }

// celDouble writes f as a CEL double literal, so that it mixes with
// double fields in a conditional, where CEL does not promote an int.
func celDouble(f float64) string {
	s := formatNumber(f)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// formatNumber writes f as CEL reads it and as messages show it.
func formatNumber(f float64) string {
	if f == 0 {
		return "0" // not -0
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func ptr(f float64) *float64 { return &f }
