package avro

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

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
	root := s.Root()
	c := checker{named: map[string]*avro.SchemaNode{}}
	collectNamed(root, c.named)
	return c.check(root, v, "", "")
}

func collectNamed(n *avro.SchemaNode, named map[string]*avro.SchemaNode) {
	switch n.Type {
	case "record", "error", "enum", "fixed":
		named[fullName(n)] = n
		for i := range n.Fields {
			collectNamed(&n.Fields[i].Type, named)
		}
	case "array":
		collectNamed(n.Items, named)
	case "map":
		collectNamed(n.Values, named)
	case "union":
		for i := range n.Branches {
			collectNamed(&n.Branches[i], named)
		}
	}
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

type checker struct {
	named map[string]*avro.SchemaNode
}

// resolve returns the definition a named reference stands for, and the
// namespace its own references are relative to.
func (c checker) resolve(n *avro.SchemaNode, ns string) (*avro.SchemaNode, string) {
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

func (c checker) check(n *avro.SchemaNode, v any, path, ns string) (any, error) {
	n, ns = c.resolve(n, ns)
	if !generic(v) {
		return v, nil
	}
	wrong := func() (any, error) {
		return nil, &FieldError{Field: path, Message: "must be " + c.describe(n, ns), wrongKind: true}
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
				return nil, &FieldError{Field: path, Message: msg}
			}
		case float64:
			if msg := integerProblem(strconv.FormatFloat(x, 'f', -1, 64), n.Type); msg != "" {
				return nil, &FieldError{Field: path, Message: msg}
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
				return nil, &FieldError{Field: path, Message: msg}
			}
		case float64:
			if n.Type == "float" && math.Abs(x) > math.MaxFloat32 {
				return nil, &FieldError{Field: path, Message: floatTooLarge("float")}
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
		return c.record(n, m, path, ns)
	case "array":
		items, ok := v.([]any)
		if !ok {
			return wrong()
		}
		out := make([]any, len(items))
		for i, it := range items {
			got, err := c.check(n.Items, it, path+"["+strconv.Itoa(i)+"]", ns)
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
		for _, k := range slices.Sorted(maps.Keys(m)) {
			got, err := c.check(n.Values, m[k], fmt.Sprintf("%s[%q]", path, k), ns)
			if err != nil {
				return nil, err
			}
			out[k] = got
		}
		return out, nil
	case "union":
		return c.union(n, v, path, ns)
	}
	return v, nil
}

// record checks m against the record n: every key a field, every field
// present unless it has a default or may be null.
func (c checker) record(n *avro.SchemaNode, m map[string]any, path, ns string) (any, error) {
	fields := make(map[string]*avro.SchemaField, len(n.Fields))
	for i := range n.Fields {
		fields[n.Fields[i].Name] = &n.Fields[i]
	}
	out := make(map[string]any, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f, ok := fields[k]
		if !ok {
			return nil, &UnknownFieldError{Field: join(path, k)}
		}
		got, err := c.check(&f.Type, m[k], join(path, k), ns)
		if err != nil {
			return nil, err
		}
		out[k] = got
	}
	for i := range n.Fields {
		f := &n.Fields[i]
		if _, ok := m[f.Name]; ok || f.HasDefault {
			continue
		}
		// The encoder writes an absent field as null where null is allowed.
		if _, err := c.check(&f.Type, nil, "", ns); err != nil {
			return nil, &FieldError{Field: join(path, f.Name), Message: "required"}
		}
	}
	return out, nil
}

// union checks v against the branches of n in the order the encoder tries
// them: the branch of v's own kind first, then the rest in the schema's
// order.
func (c checker) union(n *avro.SchemaNode, v any, path, ns string) (any, error) {
	order := make([]int, 0, len(n.Branches))
	if k := ownKind(v); k != "" {
		for i := range n.Branches {
			if b, _ := c.resolve(&n.Branches[i], ns); b.Type == k {
				order = append(order, i)
				break
			}
		}
	}
	for i := range n.Branches {
		if !slices.Contains(order, i) {
			order = append(order, i)
		}
	}
	var errs []error
	for _, i := range order {
		got, err := c.check(&n.Branches[i], v, path, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v == nil || c.alternatives(n, ns) < 2 {
			return got, nil
		}
		return map[string]any{c.tag(&n.Branches[i], ns): got}, nil
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
		return nil, &FieldError{Field: path, Message: "must be " + c.describe(n, ns), wrongKind: true}
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
func (c checker) alternatives(n *avro.SchemaNode, ns string) int {
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
func (c checker) tag(b *avro.SchemaNode, ns string) string {
	def, _ := c.resolve(b, ns)
	switch def.Type {
	case "record", "error", "enum", "fixed":
		return fullName(def)
	}
	return def.Type
}

// describe says in words what a value of n must be.
func (c checker) describe(n *avro.SchemaNode, ns string) string {
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
