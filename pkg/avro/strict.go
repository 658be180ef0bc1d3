package avro

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/twmb/avro"
)

// UnknownFieldError reports a key in generic input that the record's schema
// does not have. Encoding a map ignores such keys; the ingest API refuses
// them so that a misspelt field is not lost silently.
type UnknownFieldError struct {
	Field string // dotted path
}

func (e *UnknownFieldError) Error() string { return "unknown field " + e.Field }

// FieldError reports a value of generic input that its schema does not
// take, or would take only by changing it.
type FieldError struct {
	Field   string // dotted path
	Message string // what the value must be

	wrongKind bool // the value is not even of the schema's kind
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Check returns v as s's encoder should take it, or an error for the first
// place where v does not fit s, visiting keys in sorted order: an
// *UnknownFieldError for a key s has no field for, a *FieldError for
// anything else. Where the encoder would change a value silently, Check
// refuses it: a number too large for its float or double (encoded as
// infinity), a number for an int or long that is not an integer literal
// in range (the encoder truncates 1.0 and rounds 1e0).
//
// A union value is taken by the first branch it fits. When the union has
// more than one branch besides null, Check returns the value as a tagged
// union ({"branch name": value}), so the encoder writes that branch rather
// than an earlier one that would drop its fields or overflow.
//
// Values generic JSON does not produce (time.Time, int64, []byte and the
// like) are left to the encoder.
func Check(s *avro.Schema, v any) (any, error) {
	c := checkers.of(s)
	// Most values fit: check them first without what naming a misfit takes
	// (paths, messages, keys in order), and again with it only when one
	// does not. Whether a value fits does not depend on the order of its
	// keys, so both passes agree on that.
	if got, err := (pass{checker: c}).check(c.root, v, "", ""); err == nil {
		return got, nil
	}
	return pass{checker: c, exact: true}.check(c.root, v, "", "")
}

// checkers holds the checker of every schema Check has been given, so that
// each schema is walked once rather than on every value: Root re-parses the
// schema's JSON on each call, which cost more than the check itself. An
// entry goes when its schema is collected. A schema never changes once
// parsed, so neither does its checker.
var checkers checkerCache

type checkerCache struct {
	m sync.Map // weak.Pointer[avro.Schema] → *checker
}

func (cc *checkerCache) of(s *avro.Schema) *checker {
	k := weak.Make(s)
	if c, ok := cc.m.Load(k); ok {
		return c.(*checker)
	}
	c := newChecker(s.Root())
	if prev, loaded := cc.m.LoadOrStore(k, c); loaded {
		return prev.(*checker)
	}
	runtime.AddCleanup(s, func(k weak.Pointer[avro.Schema]) { cc.m.Delete(k) }, k)
	return c
}

// newChecker returns the checker of the schema whose tree is root, with
// the named types and each record's fields by name gathered up front.
func newChecker(root *avro.SchemaNode) *checker {
	c := &checker{root: root, named: map[string]*avro.SchemaNode{}, fields: map[*avro.SchemaNode]map[string]*avro.SchemaField{}}
	c.collect(root)
	return c
}

func (c *checker) collect(n *avro.SchemaNode) {
	switch n.Type {
	case "record", "error", "enum", "fixed":
		c.named[fullName(n)] = n
		if len(n.Fields) > 0 {
			c.fields[n] = recordFields(n)
		}
		for i := range n.Fields {
			c.collect(&n.Fields[i].Type)
		}
	case "array":
		c.collect(n.Items)
	case "map":
		c.collect(n.Values)
	case "union":
		for i := range n.Branches {
			c.collect(&n.Branches[i])
		}
	}
}

// recordFields returns the record n's fields by name.
func recordFields(n *avro.SchemaNode) map[string]*avro.SchemaField {
	fields := make(map[string]*avro.SchemaField, len(n.Fields))
	for i := range n.Fields {
		fields[n.Fields[i].Name] = &n.Fields[i]
	}
	return fields
}

func fullName(n *avro.SchemaNode) string {
	if n.Namespace == "" || strings.Contains(n.Name, ".") {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}

// lookupNamed returns the named type a reference names: a short name is
// relative to the enclosing namespace ns, as the Avro specification says.
func lookupNamed(named map[string]*avro.SchemaNode, name, ns string) (*avro.SchemaNode, bool) {
	if ns != "" && !strings.Contains(name, ".") {
		if def, ok := named[ns+"."+name]; ok {
			return def, true
		}
	}
	def, ok := named[name]
	return def, ok
}

// checker checks values against one schema. It is not changed once made,
// so any number of goroutines may use it at once.
type checker struct {
	root  *avro.SchemaNode
	named map[string]*avro.SchemaNode
	// fields holds each record's fields by name.
	fields map[*avro.SchemaNode]map[string]*avro.SchemaField
}

// pass is one walk of a value with a checker.
type pass struct {
	*checker
	// exact visits keys in sorted order and reports a misfit with its
	// path and message; without it a misfit is errMisfit.
	exact bool
}

// errMisfit is a misfit as a pass that is not exact reports it.
var errMisfit = errors.New("the value does not fit the schema")

// misfit returns the error for the value at path that does not fit as msg
// says.
func (p pass) misfit(path, msg string, wrongKind bool) error {
	if !p.exact {
		return errMisfit
	}
	return &FieldError{Field: path, Message: msg, wrongKind: wrongKind}
}

// each calls f with each of m's keys and values, in key order when p is
// exact, until f returns an error, which it returns.
func (p pass) each(m map[string]any, f func(k string, x any) error) error {
	if !p.exact {
		for k, x := range m {
			if err := f(k, x); err != nil {
				return err
			}
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := f(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// field, item and entry return the path of a record's field, an array's
// item and a map's entry below path; a pass that is not exact has no use
// for paths.
func (p pass) field(path, name string) string {
	if !p.exact {
		return ""
	}
	return join(path, name)
}

func (p pass) item(path string, i int) string {
	if !p.exact {
		return ""
	}
	return path + "[" + strconv.Itoa(i) + "]"
}

func (p pass) entry(path, key string) string {
	if !p.exact {
		return ""
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

// resolve returns the definition a named reference stands for, and the
// namespace its own references are relative to.
func (c *checker) resolve(n *avro.SchemaNode, ns string) (*avro.SchemaNode, string) {
	switch n.Type {
	case "null", "boolean", "int", "long", "float", "double", "string", "bytes", "array", "map", "union":
		return n, ns
	}
	if def, ok := lookupNamed(c.named, n.Type, ns); ok {
		n = def
	}
	switch n.Type {
	case "record", "error", "enum", "fixed":
		name := fullName(n)
		ns = name[:max(strings.LastIndexByte(name, '.'), 0)]
	}
	return n, ns
}

func (p pass) check(n *avro.SchemaNode, v any, path, ns string) (any, error) {
	n, ns = p.resolve(n, ns)
	if !generic(v) {
		return v, nil
	}
	wrong := func() (any, error) {
		if !p.exact {
			return nil, errMisfit
		}
		return nil, &FieldError{Field: path, Message: "must be " + p.describe(n, ns), wrongKind: true}
	}
	switch n.Type {
	case "null":
		if v != nil {
			return wrong()
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return wrong()
		}
	case "int", "long":
		switch x := v.(type) {
		case json.Number:
			if msg := integerProblem(string(x), n.Type); msg != "" {
				return nil, p.misfit(path, msg, false)
			}
		case float64:
			if msg := integerProblem(strconv.FormatFloat(x, 'f', -1, 64), n.Type); msg != "" {
				return nil, p.misfit(path, msg, false)
			}
		case string:
			// The encoder reads RFC 3339 text for dates and timestamps.
			if n.LogicalType == "" {
				return wrong()
			}
		default:
			return wrong()
		}
	case "float", "double":
		switch x := v.(type) {
		case json.Number:
			if msg := floatProblem(string(x), n.Type); msg != "" {
				return nil, p.misfit(path, msg, false)
			}
		case float64:
			if n.Type == "float" && math.Abs(x) > math.MaxFloat32 {
				return nil, p.misfit(path, floatTooLarge("float"), false)
			}
		default:
			return wrong()
		}
	case "string", "bytes", "fixed":
		switch v.(type) {
		case string:
		case json.Number:
			// The encoder reads a decimal from a number.
			if n.LogicalType != "decimal" {
				return wrong()
			}
		default:
			return wrong()
		}
	case "enum":
		if s, ok := v.(string); !ok || !slices.Contains(n.Symbols, s) {
			return wrong()
		}
	case "record", "error":
		m, ok := v.(map[string]any)
		if !ok {
			return wrong()
		}
		return p.record(n, m, path, ns)
	case "array":
		items, ok := v.([]any)
		if !ok {
			return wrong()
		}
		out := make([]any, len(items))
		for i, it := range items {
			got, err := p.check(n.Items, it, p.item(path, i), ns)
			if err != nil {
				return nil, err
			}
			out[i] = got
		}
		return out, nil
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return wrong()
		}
		out := make(map[string]any, len(m))
		err := p.each(m, func(k string, x any) error {
			got, err := p.check(n.Values, x, p.entry(path, k), ns)
			out[k] = got
			return err
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	case "union":
		return p.union(n, v, path, ns)
	}
	return v, nil
}

// record checks m against the record n: every key a field, every field
// present unless it has a default or may be null.
func (p pass) record(n *avro.SchemaNode, m map[string]any, path, ns string) (any, error) {
	fields, ok := p.fields[n]
	if !ok {
		fields = recordFields(n)
	}
	out := make(map[string]any, len(m))
	err := p.each(m, func(k string, x any) error {
		f, ok := fields[k]
		if !ok {
			if !p.exact {
				return errMisfit
			}
			return &UnknownFieldError{Field: join(path, k)}
		}
		got, err := p.check(&f.Type, x, p.field(path, k), ns)
		out[k] = got
		return err
	})
	if err != nil {
		return nil, err
	}
	for i := range n.Fields {
		f := &n.Fields[i]
		if _, ok := m[f.Name]; ok || f.HasDefault {
			continue
		}
		// The encoder writes an absent field as null where null is allowed.
		// Whether null fits is all that matters here, not why it does not.
		if _, err := (pass{checker: p.checker}).check(&f.Type, nil, "", ns); err != nil {
			return nil, p.misfit(p.field(path, f.Name), "required", false)
		}
	}
	return out, nil
}

// union checks v against the branches of n in the order the encoder tries
// them: the branch of v's own kind first, then the rest in the schema's
// order.
func (p pass) union(n *avro.SchemaNode, v any, path, ns string) (any, error) {
	own := -1
	if k := ownKind(v); k != "" {
		for i := range n.Branches {
			if b, _ := p.resolve(&n.Branches[i], ns); b.Type == k {
				own = i
				break
			}
		}
	}
	var errs []error
	// j = -1 stands for the branch of v's own kind, which the loop then
	// skips in its place.
	for j := -1; j < len(n.Branches); j++ {
		i := j
		switch {
		case j == -1 && own < 0, j == own:
			continue
		case j == -1:
			i = own
		}
		got, err := p.check(&n.Branches[i], v, path, ns)
		if err != nil {
			if p.exact {
				errs = append(errs, err)
			}
			continue
		}
		if v == nil || p.alternatives(n, ns) < 2 {
			return got, nil
		}
		return map[string]any{p.tag(&n.Branches[i], ns): got}, nil
	}
	if !p.exact {
		return nil, errMisfit
	}
	// A value of a branch's kind that fails inside it is better explained
	// by that failure than by the list of kinds.
	var inner []error
	for _, err := range errs {
		fe, ok := err.(*FieldError)
		if ok && fe.wrongKind && fe.Field == path {
			continue
		}
		if !slices.ContainsFunc(inner, func(e error) bool { return e.Error() == err.Error() }) {
			inner = append(inner, err)
		}
	}
	switch len(inner) {
	case 0:
		return nil, &FieldError{Field: path, Message: "must be " + p.describe(n, ns), wrongKind: true}
	case 1:
		return nil, inner[0]
	}
	msgs := make([]string, len(inner))
	for i, err := range inner {
		msgs[i] = err.Error()
	}
	return nil, &FieldError{Field: path, Message: "fits no type the union allows (" + strings.Join(msgs, "; ") + ")"}
}

// alternatives counts the branches of the union n besides null.
func (c *checker) alternatives(n *avro.SchemaNode, ns string) int {
	k := 0
	for i := range n.Branches {
		if b, _ := c.resolve(&n.Branches[i], ns); b.Type != "null" {
			k++
		}
	}
	return k
}

// tag returns the name a tagged union value gives branch b: the full name
// of a named type, else the type.
func (c *checker) tag(b *avro.SchemaNode, ns string) string {
	def, _ := c.resolve(b, ns)
	switch def.Type {
	case "record", "error", "enum", "fixed":
		return fullName(def)
	}
	return def.Type
}

// describe says in words what a value of n must be.
func (c *checker) describe(n *avro.SchemaNode, ns string) string {
	n, ns = c.resolve(n, ns)
	switch n.Type {
	case "null":
		return "null"
	case "boolean":
		return "true or false"
	case "int", "long":
		if n.LogicalType != "" {
			return fmt.Sprintf("an integer or an RFC 3339 time (%s %s)", n.Type, n.LogicalType)
		}
		return fmt.Sprintf("an integer (%s)", n.Type)
	case "float", "double":
		return fmt.Sprintf("a number (%s)", n.Type)
	case "string", "bytes", "fixed":
		return "a string"
	case "enum":
		return "one of " + strings.Join(n.Symbols, ", ")
	case "record", "error":
		return "an object (" + n.Name + ")"
	case "array":
		return "an array"
	case "map":
		return "an object"
	case "union":
		var ds []string
		for i := range n.Branches {
			ds = append(ds, c.describe(&n.Branches[i], ns))
		}
		return strings.Join(ds, ", or ")
	}
	return n.Type
}

// integerProblem says why the JSON number s is not an Avro int or long
// (typ), or returns "".
func integerProblem(s, typ string) string {
	bits, lo, hi := 32, int64(math.MinInt32), int64(math.MaxInt32)
	if typ == "long" {
		bits, lo, hi = 64, math.MinInt64, math.MaxInt64
	}
	if strings.ContainsAny(s, ".eE") {
		return fmt.Sprintf("must be an integer (%s) written without a fraction or exponent, such as 42", typ)
	}
	if _, err := strconv.ParseInt(s, 10, bits); err != nil {
		return fmt.Sprintf("must be an integer from %d to %d (%s)", lo, hi, typ)
	}
	return ""
}

// floatProblem says why the JSON number s is not an Avro float or double
// (typ), or returns "".
func floatProblem(s, typ string) string {
	bits := 64
	if typ == "float" {
		bits = 32
	}
	if _, err := strconv.ParseFloat(s, bits); errors.Is(err, strconv.ErrRange) {
		return floatTooLarge(typ)
	} else if err != nil {
		return fmt.Sprintf("must be a number (%s)", typ)
	}
	return ""
}

func floatTooLarge(typ string) string {
	limit := math.MaxFloat64
	if typ == "float" {
		limit = math.MaxFloat32
	}
	return fmt.Sprintf("must be a number (%s) of magnitude at most %g", typ, limit)
}

// generic reports whether v is of a type JSON decodes to (with numbers as
// json.Number, or float64).
func generic(v any) bool {
	switch v.(type) {
	case nil, bool, string, json.Number, float64, map[string]any, []any:
		return true
	}
	return false
}

// ownKind returns the Avro type the encoder picks for v before trying
// the union's branches in order: string, boolean or double.
func ownKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		return "double"
	}
	return ""
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
