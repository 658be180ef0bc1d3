package judge

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"cel.dev/cel-go/common/types"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/avro"

	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// The wire reader reads what a judgement needs of an event straight from
// its Avro body, by a plan made once per writer schema: the envelope's
// fields, where each image starts, and then, by a plan made once per set
// of fields the rules read, those fields of each image as rules values;
// when a rule fires, it writes each image as the JSON text the
// notification carries. It reads the subset of Avro that Herald's event schemas are made of and
// leaves anything else to the general decoder (twmb/avro): a plan is made
// only for a schema it can read whole, and a body it finds anything wrong
// with (a short read, a union or enum index out of range, bytes left over)
// is read again by the general decoder, which names the fault. What it
// returns for a body it reads is what the general decoder returns.

// maxWireDepth bounds how deep the reader follows nested values; a schema
// nested deeper has no plan.
const maxWireDepth = 32

// wireKind is the kind of a schema node, as the reader walks it.
type wireKind uint8

const (
	wireNull wireKind = iota
	wireBoolean
	wireInt
	wireLong
	wireFloat
	wireDouble
	wireBytes // bytes and string: a length, then the bytes
	wireEnum
	wireFixed
	wireRecord
	wireArray
	wireMap
	wireUnion
)

// wireNode is a writer schema node, as the reader walks it.
type wireNode struct {
	kind wireKind
	// plain is a node without a logical type; millis a long of the
	// logical type timestamp-millis.
	plain    bool
	millis   bool
	isString bool
	size     int         // fixed
	symbols  []string    // enum
	fields   []*wireNode // record, in the writer's order
	names    []string    // record field names
	items    *wireNode   // array items, map values
	branches []*wireNode // union
}

// primitiveKinds are the kinds of Avro's primitive types; a string is
// read as bytes are.
var primitiveKinds = map[string]wireKind{
	"null": wireNull, "boolean": wireBoolean, "int": wireInt, "long": wireLong,
	"float": wireFloat, "double": wireDouble, "bytes": wireBytes, "string": wireBytes,
}

// wireNodeOf returns the reader's form of n, or nil when n holds what the
// reader does not read (a reference left unexpanded, nesting deeper than
// maxWireDepth).
func wireNodeOf(n *avro.SchemaNode, depth int) *wireNode {
	if n == nil || depth > maxWireDepth {
		return nil
	}
	w := &wireNode{plain: n.LogicalType == "", millis: n.Type == "long" && n.LogicalType == "timestamp-millis"}
	if kind, ok := primitiveKinds[n.Type]; ok {
		w.kind, w.isString = kind, n.Type == "string"
		return w
	}
	switch n.Type {
	case "enum":
		w.kind, w.symbols = wireEnum, n.Symbols
	case "fixed":
		w.kind, w.size = wireFixed, n.Size
	case "record":
		w.kind = wireRecord
		for i := range n.Fields {
			f := wireNodeOf(&n.Fields[i].Type, depth+1)
			if f == nil {
				return nil
			}
			w.fields, w.names = append(w.fields, f), append(w.names, n.Fields[i].Name)
		}
	case "array", "map":
		w.kind = wireArray
		inner := n.Items
		if n.Type == "map" {
			w.kind, inner = wireMap, n.Values
		}
		if w.items = wireNodeOf(inner, depth+1); w.items == nil {
			return nil
		}
	case "union":
		w.kind = wireUnion
		for i := range n.Branches {
			b := wireNodeOf(&n.Branches[i], depth+1)
			if b == nil {
				return nil
			}
			w.branches = append(w.branches, b)
		}
	default:
		return nil
	}
	return w
}

// wireBuf is a body being read, as a string, so that the strings read are
// parts of it and cost no copy each; a read past its end, or anything else
// the general decoder would refuse, sets bad and reads zeros from then on.
type wireBuf struct {
	b   string
	bad bool
}

func (r *wireBuf) fail() { r.bad, r.b = true, "" }

// long reads a zigzag varint of up to 64 bits.
func (r *wireBuf) long() int64 {
	if c, ok := r.oneByte(); ok {
		return c
	}
	return r.varint(10, 1)
}

// int reads a zigzag varint of up to 32 bits.
func (r *wireBuf) int() int32 {
	if c, ok := r.oneByte(); ok {
		return int32(c)
	}
	return int32(r.varint(5, 0x0f))
}

// oneByte reads a varint of one byte, which most are: a length under 64, a
// union's branch, an enum's symbol; false when the next is longer.
func (r *wireBuf) oneByte() (int64, bool) {
	if len(r.b) == 0 || r.b[0] >= 0x80 {
		return 0, false
	}
	c := r.b[0]
	r.b = r.b[1:]
	return int64(c>>1) ^ -int64(c&1), true
}

// varint reads a zigzag varint of at most n bytes, the last of them no
// more than last, as the general decoder does: a long takes ten bytes,
// the tenth at most 1, an int five, the fifth at most 0x0f.
func (r *wireBuf) varint(n int, last byte) int64 {
	var u uint64
	for i := range n {
		if i >= len(r.b) {
			r.fail()
			return 0
		}
		c := r.b[i]
		if i == n-1 && c > last {
			r.fail()
			return 0
		}
		u |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			r.b = r.b[i+1:]
			return int64(u>>1) ^ -int64(u&1)
		}
	}
	r.fail()
	return 0
}

// take returns the next n bytes.
func (r *wireBuf) take(n int) string {
	if n < 0 || n > len(r.b) {
		r.fail()
		return ""
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

// bytes reads a length and that many bytes.
func (r *wireBuf) bytes() string {
	n := r.long()
	if n < 0 || n > int64(len(r.b)) {
		r.fail()
		return ""
	}
	return r.take(int(n))
}

// fixed64 reads 8 bytes, little-endian.
func (r *wireBuf) fixed64() uint64 {
	b := r.take(8)
	if len(b) < 8 {
		return 0
	}
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// fixed32 reads 4 bytes, little-endian.
func (r *wireBuf) fixed32() uint32 {
	b := r.take(4)
	if len(b) < 4 {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// branch reads a union's branch index and returns the branch.
func (r *wireBuf) branch(n *wireNode) *wireNode {
	i := r.int()
	if i < 0 || int(i) >= len(n.branches) {
		r.fail()
		return nil
	}
	return n.branches[i]
}

// symbol reads an enum's symbol.
func (r *wireBuf) symbol(n *wireNode) string {
	i := r.int()
	if i < 0 || int(i) >= len(n.symbols) {
		r.fail()
		return ""
	}
	return n.symbols[i]
}

// skip reads past a value of n.
func (r *wireBuf) skip(n *wireNode) {
	if r.bad {
		return
	}
	switch n.kind {
	case wireNull:
	case wireBoolean:
		r.take(1)
	case wireInt, wireEnum:
		r.int()
	case wireLong:
		r.long()
	case wireFloat:
		r.take(4)
	case wireDouble:
		r.take(8)
	case wireBytes:
		r.bytes()
	case wireFixed:
		r.take(n.size)
	case wireRecord:
		for _, f := range n.fields {
			r.skip(f)
		}
	case wireUnion:
		if b := r.branch(n); b != nil {
			r.skip(b)
		}
	case wireArray, wireMap:
		r.blocks(n)
	}
}

// blocks reads past an array's or a map's blocks.
func (r *wireBuf) blocks(n *wireNode) {
	r.eachItem(n, func() {
		if n.kind == wireMap {
			r.bytes()
		}
		r.skip(n.items)
	})
}

// eachItem calls item for each item of an array, or entry of a map, that
// follows, item reading it. A block whose count is larger than the bytes
// left, or that gives its size in bytes, is left to the general decoder,
// which bounds both its own way.
func (r *wireBuf) eachItem(n *wireNode, item func()) {
	for !r.bad {
		count := r.long()
		if count == 0 || r.bad {
			return
		}
		if count < 0 || count > int64(len(r.b)) {
			r.fail()
			return
		}
		for range count {
			item()
			if r.bad {
				return
			}
		}
	}
}

// value reads a value of n that the rules read as it is (fieldType): a
// scalar without a logical type, or null. It returns the value as a field
// of a projected image reads (see rules.ValueOf).
func (r *wireBuf) value(n *wireNode) any {
	switch n.kind {
	case wireNull:
		return nil
	case wireBoolean:
		b := r.take(1)
		return types.Bool(len(b) == 1 && b[0] == 1)
	case wireInt:
		return types.Int(r.int())
	case wireLong:
		return types.Int(r.long())
	case wireFloat:
		return types.Double(float64(math.Float32frombits(r.fixed32())))
	case wireDouble:
		return types.Double(math.Float64frombits(r.fixed64()))
	case wireBytes:
		return types.String(r.bytes())
	case wireEnum:
		return types.String(r.symbol(n))
	case wireUnion:
		if b := r.branch(n); b != nil {
			return r.value(b)
		}
	}
	return nil
}

// envelopeRole is what the envelope reader does with a top-level field.
type envelopeRole uint8

const (
	roleSkip envelopeRole = iota
	roleEventID
	roleTenantID
	roleEntityType
	roleEntityID
	roleOperation
	roleOccurredAt
	roleAccountID
	roleDeviceID
	roleCorrelationID
	roleOld
	roleNew
)

// envelopePlan reads the events of one writer schema.
type envelopePlan struct {
	root  *wireNode
	roles []envelopeRole
	// images are the old and new images' unions of null and a record,
	// and records the records as the schema has them; nil for an image
	// the schema does not have. json writes them as JSON; nil when the
	// reader does not.
	images  [2]*wireNode
	records [2]*avro.SchemaNode
	json    *[2]*jsonPlan
}

// newEnvelopePlan returns the plan of a writer schema, or nil when the
// reader does not read it: its envelope fields must have the types
// Herald's envelope gives them (the general decoder reads any others more
// leniently), and old and new must each be a union of null and a record.
func newEnvelopePlan(root *avro.SchemaNode) *envelopePlan {
	w := wireNodeOf(root, 0)
	if w == nil || w.kind != wireRecord {
		return nil
	}
	p := &envelopePlan{root: w, roles: make([]envelopeRole, len(w.fields))}
	strings := map[string]envelopeRole{"eventId": roleEventID, "tenantId": roleTenantID, "entityType": roleEntityType, "entityId": roleEntityID}
	optional := map[string]envelopeRole{"accountId": roleAccountID, "deviceId": roleDeviceID, "correlationId": roleCorrelationID}
	for i, f := range w.fields {
		name := w.names[i]
		if role, ok := strings[name]; ok {
			if f.kind != wireBytes || !f.isString || !f.plain {
				return nil
			}
			p.roles[i] = role
			continue
		}
		if role, ok := optional[name]; ok {
			if !nullOr(f, func(b *wireNode) bool { return b.kind == wireBytes && b.isString && b.plain }) {
				return nil
			}
			p.roles[i] = role
			continue
		}
		switch name {
		case "operation":
			if !(f.kind == wireEnum || f.kind == wireBytes && f.isString && f.plain) {
				return nil
			}
			p.roles[i] = roleOperation
		case "occurredAt":
			if !f.millis {
				return nil
			}
			p.roles[i] = roleOccurredAt
		case "old", "new":
			if !nullOr(f, func(b *wireNode) bool { return b.kind == wireRecord }) {
				return nil
			}
			image, role := 0, roleOld
			if name == "new" {
				image, role = 1, roleNew
			}
			p.roles[i], p.images[image], p.records[image] = role, f, recordOf(&root.Fields[i].Type)
		}
	}
	p.json = &[2]*jsonPlan{}
	for i, union := range p.images {
		if union == nil {
			continue
		}
		if p.json[i] = newJSONPlan(union); p.json[i] == nil {
			p.json = nil
			break
		}
	}
	return p
}

// imagePlans returns the plans that read fields of each image, nil when
// the reader does not read one of them.
func (p *envelopePlan) imagePlans(fields []string) *[2]*imagePlan {
	var plans [2]*imagePlan
	for i, union := range p.images {
		if union == nil {
			continue
		}
		if plans[i] = newImagePlan(union, p.records[i], fields); plans[i] == nil {
			return nil
		}
	}
	return &plans
}

// nullOr reports whether n is a union of null and one branch that ok
// takes.
func nullOr(n *wireNode, ok func(*wireNode) bool) bool {
	if n.kind != wireUnion || len(n.branches) != 2 {
		return false
	}
	a, b := n.branches[0], n.branches[1]
	return (a.kind == wireNull && ok(b)) || (b.kind == wireNull && ok(a))
}

// wireImages is where an event's images start in its body: the offsets of
// their union indexes, or -1 for a schema without the image.
type wireImages [2]int

// read reads body's envelope into env and returns where its images start,
// or false when the body has anything the general decoder must look at.
// The optional fields point into optional.
func (p *envelopePlan) read(body string, env *envelope, optional *[3]string) (wireImages, bool) {
	r := wireBuf{b: body}
	at := wireImages{-1, -1}
	for i, f := range p.root.fields {
		switch p.roles[i] {
		case roleSkip:
			r.skip(f)
		case roleEventID:
			env.EventID = r.bytes()
		case roleTenantID:
			env.TenantID = r.bytes()
		case roleEntityType:
			env.EntityType = r.bytes()
		case roleEntityID:
			env.EntityID = r.bytes()
		case roleOperation:
			if f.kind == wireEnum {
				env.Operation = r.symbol(f)
			} else {
				env.Operation = r.bytes()
			}
		case roleOccurredAt:
			env.OccurredAt = time.UnixMilli(r.long()).UTC()
		case roleAccountID:
			env.AccountID = r.optionalString(f, &optional[0])
		case roleDeviceID:
			env.DeviceID = r.optionalString(f, &optional[1])
		case roleCorrelationID:
			env.CorrelationID = r.optionalString(f, &optional[2])
		case roleOld, roleNew:
			at[p.roles[i]-roleOld] = len(body) - len(r.b)
			r.skip(f)
		}
		if r.bad {
			return at, false
		}
	}
	return at, len(r.b) == 0
}

// optionalString reads a union of null and a string into *to, and returns
// to, or nil for null.
func (r *wireBuf) optionalString(n *wireNode, to *string) *string {
	b := r.branch(n)
	if b == nil || b.kind == wireNull {
		return nil
	}
	*to = r.bytes()
	return to
}

// image reads the branch index of the image at body[at:], a union of null
// and a record, and returns the reader past it and the record; a nil
// record and true for a null image, false when the index is wrong.
func image(body string, at int, union *wireNode) (wireBuf, *wireNode, bool) {
	r := wireBuf{b: body[at:]}
	b := r.branch(union)
	if b == nil || b.kind == wireNull {
		return r, nil, b != nil
	}
	return r, b, true
}

// record returns the record branch of an image's union.
func (union *wireNode) record() *wireNode {
	for _, b := range union.branches {
		if b.kind == wireRecord {
			return b
		}
	}
	return nil
}

// imagePlan reads the fields a set of rules reads of one image.
type imagePlan struct {
	union *wireNode
	// fields are the names of the fields read; slot is, for each of the
	// record's fields in the writer's order, the index of the field among
	// them, or -1 to skip it.
	fields []string
	slot   []int
}

// newImagePlan returns the plan that reads fields of an image, a union of
// null and a record (schema, as the schema has it); nil when a field read
// is one the general decoder reads generically (fieldType), for the reader
// reads only those it reads as they are.
func newImagePlan(union *wireNode, schema *avro.SchemaNode, fields []string) *imagePlan {
	record := union.record()
	p := &imagePlan{union: union, fields: fields, slot: make([]int, len(record.fields))}
	for i, name := range record.names {
		p.slot[i] = -1
		for j, f := range fields {
			if f == name {
				if fieldType(schema, name) == anyType {
					return nil
				}
				p.slot[i] = j
			}
		}
	}
	return p
}

// read reads the image at body[at:] into rec, a record of the fields read
// with room for their values, and returns it; nil for a null image. It is
// false when the body has anything the general decoder must look at.
func (p *imagePlan) read(body string, at int, rec *rules.Record) (any, bool) {
	r, b, ok := image(body, at, p.union)
	if b == nil {
		return nil, ok
	}
	rec.Names = p.fields
	for i, f := range b.fields {
		if j := p.slot[i]; j >= 0 {
			rec.Values[j] = r.value(f)
		} else {
			r.skip(f)
		}
		if r.bad {
			return nil, false
		}
	}
	return rec, true
}

// jsonPlan writes an image as the JSON text a notification carries,
// straight from the wire: the text the general decoder's generic image
// gives through notification's JSON writer (segmentio/encoding, keys in
// order, numbers that are not finite as null). Keys and strings are
// written by that writer, other scalars by its rules (appendJSON).
type jsonPlan struct {
	union *wireNode
	// order is the record's fields in the order of their names; keys
	// their names as JSON, followed by a colon, in the writer's order.
	order []int
	keys  [][]byte
}

// jsonFlags are the flags json.Marshal writes with.
const jsonFlags = json.EscapeHTML | json.SortMapKeys

// newJSONPlan returns the plan of an image, a union of null and a record;
// nil when a field of the record holds what jsonable does not take.
func newJSONPlan(union *wireNode) *jsonPlan {
	record := union.record()
	p := &jsonPlan{union: union}
	for i, f := range record.fields {
		if !jsonable(f) {
			return nil
		}
		key, err := json.Append(nil, record.names[i], jsonFlags)
		if err != nil {
			return nil
		}
		p.keys = append(p.keys, append(key, ':'))
		p.order = append(p.order, i)
	}
	slices.SortFunc(p.order, func(a, b int) int { return strings.Compare(record.names[a], record.names[b]) })
	return p
}

// jsonable reports whether native reads a value of n: a scalar without a
// logical type but bytes, a timestamp in milliseconds, or a record, array
// or map of those, or a union of null and one.
func jsonable(n *wireNode) bool {
	switch n.kind {
	case wireNull:
		return true
	case wireBoolean, wireInt, wireFloat, wireDouble, wireEnum:
		return n.plain
	case wireLong:
		return n.plain || n.millis
	case wireBytes:
		return n.isString && n.plain
	case wireRecord:
		for _, f := range n.fields {
			if !jsonable(f) {
				return false
			}
		}
		return true
	case wireArray, wireMap:
		return jsonable(n.items)
	case wireUnion:
		return nullOr(n, jsonable)
	}
	return false
}

// write writes the image at body[at:] as JSON text into *dst and returns
// dst, nil for a null image; false when the general decoder must. The
// fields are found in the body's order and written in the keys'.
func (p *jsonPlan) write(body string, at int, dst *string) (*string, bool) {
	r, b, ok := image(body, at, p.union)
	if b == nil {
		return nil, ok
	}
	var inline [16]string
	from := inline[:0]
	if len(b.fields) > len(inline) {
		from = make([]string, 0, len(b.fields))
	}
	for _, f := range b.fields {
		from = append(from, r.b)
		r.skip(f)
	}
	if r.bad {
		return nil, false
	}
	out := make([]byte, 0, 32*len(b.fields))
	out = append(out, '{')
	for n, i := range p.order {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, p.keys[i]...)
		field := wireBuf{b: from[i]}
		var err error
		if out, err = field.appendJSON(out, b.fields[i]); err != nil || field.bad {
			return nil, false
		}
	}
	out = append(out, '}')
	// out is not written again: the text is its bytes.
	*dst = unsafe.String(unsafe.SliceData(out), len(out))
	return dst, true
}

// appendJSON writes what native reads as the JSON the writer gives it: a
// scalar straight from the wire, anything else through native.
func (r *wireBuf) appendJSON(out []byte, n *wireNode) ([]byte, error) {
	switch n.kind {
	case wireNull:
		return append(out, "null"...), nil
	case wireBoolean:
		b := r.take(1)
		return strconv.AppendBool(out, len(b) == 1 && b[0] == 1), nil
	case wireInt:
		return strconv.AppendInt(out, int64(r.int()), 10), nil
	case wireLong:
		if n.millis {
			return notification.AppendTime(out, time.UnixMilli(r.long()).UTC()), nil
		}
		return strconv.AppendInt(out, r.long(), 10), nil
	case wireFloat:
		return notification.AppendNumber(out, float64(math.Float32frombits(r.fixed32())), 32), nil
	case wireDouble:
		return notification.AppendNumber(out, math.Float64frombits(r.fixed64()), 64), nil
	case wireBytes:
		return json.AppendEscape(out, r.bytes(), jsonFlags), nil
	case wireEnum:
		return json.AppendEscape(out, r.symbol(n), jsonFlags), nil
	case wireUnion:
		if b := r.branch(n); b != nil {
			return r.appendJSON(out, b)
		}
		return out, nil
	case wireMap, wireArray:
		// No items: a first block of none.
		if len(r.b) > 0 && r.b[0] == 0 {
			r.b = r.b[1:]
			if n.kind == wireMap {
				return append(out, "{}"...), nil
			}
			return append(out, "[]"...), nil
		}
	}
	return json.Append(out, r.native(n), jsonFlags)
}

// native reads a value that jsonable takes as the general decoder's
// generic value, a number that is not finite as nil.
func (r *wireBuf) native(n *wireNode) any {
	if r.bad {
		return nil
	}
	switch n.kind {
	case wireBoolean:
		b := r.take(1)
		return len(b) == 1 && b[0] == 1
	case wireInt:
		return r.int()
	case wireLong:
		if n.millis {
			return time.UnixMilli(r.long()).UTC()
		}
		return r.long()
	case wireFloat:
		f := math.Float32frombits(r.fixed32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil
		}
		return f
	case wireDouble:
		f := math.Float64frombits(r.fixed64())
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	case wireBytes:
		return r.bytes()
	case wireEnum:
		return r.symbol(n)
	case wireRecord:
		m := make(map[string]any, len(n.fields))
		for i, f := range n.fields {
			m[n.names[i]] = r.native(f)
		}
		return m
	case wireArray:
		out := []any{}
		r.eachItem(n, func() { out = append(out, r.native(n.items)) })
		return out
	case wireMap:
		out := map[string]any{}
		r.eachItem(n, func() {
			k := r.bytes()
			out[k] = r.native(n.items)
		})
		return out
	case wireUnion:
		if b := r.branch(n); b != nil {
			return r.native(b)
		}
	}
	return nil
}
