package rules

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"cel.dev/cel-go/common/types"
	"github.com/twmb/avro"
)

// Entity is an entity type's fields as rules see them: the fields of the
// record in its events' old and new images, over every registered version.
type Entity struct {
	Name   string  `json:"entityType"`
	Fields []Field `json:"fields"`
}

// Field is one field of an entity, as GET /v1/event-types/{type}/fields
// lists it.
type Field struct {
	Name string `json:"name"`
	// Type is the Avro type: boolean, int, long, float, double, string,
	// bytes, enum, timestamp, date, record, array, map, or union.
	Type     string   `json:"type"`
	Nullable bool     `json:"nullable"`
	Doc      string   `json:"doc,omitempty"`
	Fields   []Field  `json:"fields,omitempty"`  // of a record
	Items    *Field   `json:"items,omitempty"`   // of an array or map
	Symbols  []string `json:"symbols,omitempty"` // of an enum

	// record is the full name a record field is declared under in CEL.
	record string
	// key is the map key the field reads, when it differs from Name.
	key string
	cel *types.Type
}

// EntityFromSchemas returns the entity whose event schemas are versions,
// oldest first. A field any version has is the entity's; where versions
// disagree on a field, the newest wins.
func EntityFromSchemas(name string, versions []*avro.Schema) (Entity, error) {
	byName := map[string]Field{}
	for i, s := range versions {
		rec, err := imageRecord(s)
		if err != nil {
			return Entity{}, fmt.Errorf("%s schema version %d: %w", name, i+1, err)
		}
		for _, f := range recordFields(rec, named(s.Root())) {
			byName[f.Name] = f
		}
	}
	fields := slices.Collect(maps.Values(byName))
	sort.Slice(fields, func(i, j int) bool { return fields[i].Name < fields[j].Name })
	return Entity{Name: name, Fields: fields}, nil
}

// imageRecord returns the record of an event schema's new (or old) image.
func imageRecord(s *avro.Schema) (*avro.SchemaNode, error) {
	root := s.Root()
	defs := named(root)
	for _, image := range []string{"new", "old"} {
		for _, f := range root.Fields {
			if f.Name != image {
				continue
			}
			n := resolve(&f.Type, defs)
			if n.Type == "union" {
				for i := range n.Branches {
					if b := resolve(&n.Branches[i], defs); b.Type == "record" {
						return b, nil
					}
				}
			}
			if n.Type == "record" {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("no record in its old or new field: not an entity-change event")
}

func named(root *avro.SchemaNode) map[string]*avro.SchemaNode {
	defs := map[string]*avro.SchemaNode{}
	var walk func(n *avro.SchemaNode)
	walk = func(n *avro.SchemaNode) {
		switch n.Type {
		case "record", "error", "enum", "fixed":
			defs[fullName(n)] = n
		}
		for i := range n.Fields {
			walk(&n.Fields[i].Type)
		}
		for i := range n.Branches {
			walk(&n.Branches[i])
		}
		if n.Items != nil {
			walk(n.Items)
		}
		if n.Values != nil {
			walk(n.Values)
		}
	}
	walk(root)
	return defs
}

func fullName(n *avro.SchemaNode) string {
	if n.Namespace == "" {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}

func resolve(n *avro.SchemaNode, defs map[string]*avro.SchemaNode) *avro.SchemaNode {
	if d, ok := defs[n.Type]; ok {
		return d
	}
	return n
}

func recordFields(rec *avro.SchemaNode, defs map[string]*avro.SchemaNode) []Field {
	out := make([]Field, 0, len(rec.Fields))
	for _, f := range rec.Fields {
		field := describe(&f.Type, defs)
		field.Name = f.Name
		field.Doc = f.Doc
		out = append(out, field)
	}
	return out
}

// describe maps an Avro type to a Field and its CEL type. Every scalar is a
// CEL wrapper type, so that comparing it with null type-checks: a field may
// be absent from an older version, or the whole image null.
func describe(n *avro.SchemaNode, defs map[string]*avro.SchemaNode) Field {
	n = resolve(n, defs)
	switch n.Type {
	case "union":
		var nonNull []*avro.SchemaNode
		for i := range n.Branches {
			if n.Branches[i].Type != "null" {
				nonNull = append(nonNull, &n.Branches[i])
			}
		}
		if len(nonNull) == 1 {
			f := describe(nonNull[0], defs)
			f.Nullable = len(n.Branches) > 1
			return f
		}
		return Field{Type: "union", Nullable: true, cel: types.DynType}
	case "boolean":
		return Field{Type: "boolean", cel: types.NewNullableType(types.BoolType)}
	case "int", "long":
		switch n.LogicalType {
		case "timestamp-millis", "timestamp-micros", "timestamp-nanos", "local-timestamp-millis", "local-timestamp-micros":
			return Field{Type: "timestamp", cel: types.NewNullableType(types.TimestampType)}
		case "date":
			return Field{Type: "date", cel: types.NewNullableType(types.TimestampType)}
		case "time-millis", "time-micros":
			return Field{Type: "time", cel: types.NewNullableType(types.DurationType)}
		}
		return Field{Type: n.Type, cel: types.NewNullableType(types.IntType)}
	case "float", "double":
		return Field{Type: n.Type, cel: types.NewNullableType(types.DoubleType)}
	case "string":
		return Field{Type: "string", cel: types.NewNullableType(types.StringType)}
	case "enum":
		return Field{Type: "enum", Symbols: n.Symbols, cel: types.NewNullableType(types.StringType)}
	case "bytes", "fixed":
		if n.LogicalType == "decimal" {
			return Field{Type: "decimal", cel: types.DynType}
		}
		return Field{Type: n.Type, cel: types.NewNullableType(types.BytesType)}
	case "record", "error":
		return Field{Type: "record", Fields: recordFields(n, defs), record: fullName(n), cel: types.NewObjectType(fullName(n))}
	case "array":
		items := describe(n.Items, defs)
		return Field{Type: "array", Items: &items, cel: types.NewListType(items.cel)}
	case "map":
		values := describe(n.Values, defs)
		return Field{Type: "map", Items: &values, cel: types.NewMapType(types.StringType, values.cel)}
	}
	return Field{Type: n.Type, cel: types.DynType}
}
