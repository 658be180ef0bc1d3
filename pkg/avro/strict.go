package avro

import (
	"fmt"
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

// CheckFields returns an *UnknownFieldError for the first key of v, at any
// depth, that s has no field for.
func CheckFields(s *avro.Schema, v any) error {
	root := s.Root()
	named := map[string]*avro.SchemaNode{}
	collectNamed(root, named)
	return checkNode(root, v, "", "", named)
}

func collectNamed(n *avro.SchemaNode, named map[string]*avro.SchemaNode) {
	switch n.Type {
	case "record", "error":
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

func checkNode(n *avro.SchemaNode, v any, path, ns string, named map[string]*avro.SchemaNode) error {
	if def, ok := lookupNamed(named, n.Type, ns); ok {
		n = def
	}
	switch n.Type {
	case "record", "error":
		m, ok := v.(map[string]any)
		if !ok {
			return nil // a type mismatch is the encoder's to report
		}
		name := fullName(n)
		ns := name[:max(strings.LastIndexByte(name, '.'), 0)]
		fields := make(map[string]*avro.SchemaNode, len(n.Fields))
		for i := range n.Fields {
			fields[n.Fields[i].Name] = &n.Fields[i].Type
		}
		for k, fv := range m {
			ft, ok := fields[k]
			if !ok {
				return &UnknownFieldError{Field: join(path, k)}
			}
			if err := checkNode(ft, fv, join(path, k), ns, named); err != nil {
				return err
			}
		}
	case "union":
		if v == nil {
			return nil
		}
		for i := range n.Branches {
			b := &n.Branches[i]
			if b.Type != "null" {
				if err := checkNode(b, v, path, ns, named); err != nil {
					return err
				}
			}
		}
	case "array":
		if items, ok := v.([]any); ok {
			for i, it := range items {
				if err := checkNode(n.Items, it, path+"["+strconv.Itoa(i)+"]", ns, named); err != nil {
					return err
				}
			}
		}
	case "map":
		if m, ok := v.(map[string]any); ok {
			for k, mv := range m {
				if err := checkNode(n.Values, mv, fmt.Sprintf("%s[%q]", path, k), ns, named); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}
