package judge

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/twmb/avro"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/schemas"
)

// kitchen is an event whose images hold every kind of Avro value, and
// whose envelope puts a field after the images.
const kitchen = `{"type": "record", "name": "Kitchen", "namespace": "herald.events", "fields": [
  {"name": "eventId", "type": "string"},
  {"name": "tenantId", "type": "string"},
  {"name": "entityType", "type": "string"},
  {"name": "operation", "type": {"type": "enum", "name": "Operation", "symbols": ["CREATE", "UPDATE", "DELETE"]}},
  {"name": "occurredAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "accountId", "type": ["null", "string"], "default": null},
  {"name": "deviceId", "type": ["string", "null"]},
  {"name": "extra", "type": {"type": "array", "items": {"type": "map", "values": "long"}}},
  {"name": "old", "type": ["null", {"type": "record", "name": "Thing", "namespace": "herald.entities", "fields": [
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string"},
    {"name": "by", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "green", "blue"]}},
    {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "dt", "type": {"type": "int", "logicalType": "date"}},
    {"name": "ni", "type": ["null", "int"]},
    {"name": "ns", "type": ["string", "null"]},
    {"name": "nd", "type": ["null", "double"]},
    {"name": "ne", "type": ["null", "Colour"]},
    {"name": "nb", "type": ["null", "boolean"]},
    {"name": "arr", "type": {"type": "array", "items": "string"}},
    {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
    {"name": "rec", "type": {"type": "record", "name": "Inner", "fields": [
      {"name": "x", "type": "double"}, {"name": "y", "type": ["null", "string"]}]}},
    {"name": "multi", "type": ["null", "string", "long"]}
  ]}], "default": null},
  {"name": "new", "type": ["null", "herald.entities.Thing"], "default": null},
  {"name": "correlationId", "type": ["null", "string"], "default": null},
  {"name": "entityId", "type": "string"}
]}`

// plain is an event whose images hold only what the reader writes as
// JSON itself: every scalar, nulls of them, timestamps, and maps, arrays
// and records of them, under names whose order is worth checking.
const plain = `{"type": "record", "name": "Plain", "namespace": "herald.events", "fields": [
  {"name": "eventId", "type": "string"},
  {"name": "tenantId", "type": "string"},
  {"name": "entityType", "type": "string"},
  {"name": "entityId", "type": "string"},
  {"name": "operation", "type": "string"},
  {"name": "occurredAt", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "old", "type": ["null", {"type": "record", "name": "Flat", "namespace": "herald.entities", "fields": [
    {"name": "remaining", "type": "double"},
    {"name": "Total", "type": "float"},
    {"name": "a_b", "type": "long"},
    {"name": "aB", "type": "int"},
    {"name": "on", "type": "boolean"},
    {"name": "note", "type": "string"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["monetary", "allowance", "x_y"]}},
    {"name": "maybe", "type": ["null", "double"]},
    {"name": "later", "type": ["float", "null"]},
    {"name": "label", "type": ["null", "string"]},
    {"name": "_zeta", "type": ["null", "long"]},
    {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    {"name": "tiers", "type": {"type": "map", "values": {"type": "record", "name": "Tier", "fields": [
      {"name": "limit", "type": "double"}, {"name": "closed", "type": ["null", "boolean"]},
      {"name": "since", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}}},
    {"name": "steps", "type": {"type": "array", "items": ["null", "float"]}},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "int"}, {"name": "s", "type": "string"}]}}
  ]}], "default": null},
  {"name": "new", "type": ["null", "herald.entities.Flat"], "default": null}
]}`

// TestTheWireReaderReadsAsTheGeneralDecoder writes random bodies of every
// event schema Herald ships and of kitchen, and reads each, and mangled
// copies of each (cut short, a byte changed, a byte added), both ways:
// whatever the wire reader reads, the envelope and any set of image
// fields, the general decoder must read too and the same. The reader must
// also read most of the bodies, so that the test cannot pass by leaving
// everything to the general decoder.
func TestTheWireReaderReadsAsTheGeneralDecoder(t *testing.T) {
	// Timestamps are read as UTC whatever the machine's zone.
	local := time.Local
	time.Local = time.FixedZone("UTC+5", 5*60*60)
	t.Cleanup(func() { time.Local = local })
	texts := []string{kitchen, plain}
	for _, rec := range schemas.Events() {
		texts = append(texts, rec.Versions...)
	}
	rng := rand.New(rand.NewPCG(30, 11))
	var bodies, read, images, imagesRead int
	jsons = 0
	for id, text := range texts {
		schema, err := avro.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		root := schema.Root().ExpandReferences()
		plan := newEnvelopePlan(root)
		if plan == nil {
			t.Fatalf("schema %d has no wire plan:\n%s", id, text)
		}
		// Every shipped schema's images are written as JSON by the reader.
		if id > 0 && plan.json == nil {
			t.Errorf("schema %d has no JSON plan:\n%s", id, text)
		}
		var names []string
		for _, f := range root.Fields {
			if f.Name == "new" {
				if r := recordOf(&f.Type); r != nil {
					for _, g := range r.Fields {
						names = append(names, g.Name)
					}
				}
			}
		}
		names = append(names, "notAField")
		schemaRead := 0
		for range 150 {
			valid := writeValue(rng, root, nil)
			for m := range 5 {
				b := valid
				if m > 0 {
					b = mangle(rng, valid)
				}
				fields := someOf(rng, names)
				bodies++
				ok, imageOK := compareWire(t, schema, plan, havro.Body{ID: id, Schema: schema, Bytes: b}, fields)
				if m == 0 {
					images++
					if ok {
						read++
						schemaRead++
					}
					if imageOK {
						imagesRead++
					}
				}
			}
		}
		// Every schema's bodies are mostly read: a skip that went wrong
		// would leave them all to the general decoder.
		if schemaRead < 150/3 {
			t.Errorf("schema %d: the reader read %d of 150 valid envelopes", id, schemaRead)
		}
	}
	t.Logf("%d bodies; of the valid ones the reader read %d of %d envelopes and %d of %d projections; %d images written as JSON", bodies, read, images, imagesRead, images, jsons)
	if jsons < 500 {
		t.Errorf("only %d images written as JSON: too few for the comparison to mean much", jsons)
	}
	if read < images*9/10 || imagesRead < images/2 {
		t.Errorf("the reader read %d of %d valid envelopes and %d projections: too few for the comparison to mean much", read, images, imagesRead)
	}
}

// compareWire reads body both ways and fails t where they differ; it
// reports whether the wire reader read the envelope, and the images.
func compareWire(t *testing.T, schema *avro.Schema, plan *envelopePlan, body havro.Body, fields []string) (bool, bool) {
	t.Helper()
	var general envelope
	generalErr := body.Decode(&general)
	d := &decoded{body: body}
	text := string(body.Bytes)
	at, ok := plan.read(text, &d.env, &d.optional)
	if !ok {
		return false, false
	}
	if generalErr != nil {
		t.Fatalf("the wire reader read % x, which the general decoder refuses: %v", body.Bytes, generalErr)
	}
	if !reflect.DeepEqual(d.env, general) {
		t.Fatalf("envelope of % x:\nwire    %+v\ngeneral %+v", body.Bytes, d.env, general)
	}
	d.plan, d.text, d.at = plan, text, at
	if plan.json != nil {
		compareJSON(t, body, plan, text, at)
	}
	p := newProjection(schema, plan, fields)
	wire, ok := p.readWire(d)
	if !ok {
		return true, false
	}
	want, gok := p.decode(d)
	if !gok {
		t.Fatalf("the wire reader read fields %v of % x, which the general decoder does not", fields, body.Bytes)
	}
	for i, pair := range [][2]any{{wire.Old, want.Old}, {wire.New, want.New}} {
		if !sameImage(pair[0], pair[1]) {
			t.Fatalf("image %d, fields %v of % x:\nwire    %#v\ngeneral %#v", i, fields, body.Bytes, pair[0], pair[1])
		}
	}
	return true, true
}

// jsons counts the images compareJSON compared.
var jsons int

// compareJSON writes body's images as JSON from the wire and fails t
// unless the text is the notification's, made from the general decoder's
// generic images.
func compareJSON(t *testing.T, body havro.Body, plan *envelopePlan, text string, at wireImages) {
	t.Helper()
	var written [2]*string
	var texts [2]string
	for i := range written {
		if at[i] < 0 {
			continue
		}
		var ok bool
		if written[i], ok = plan.json[i].write(text, at[i], &texts[i]); !ok {
			return
		}
	}
	var g any
	if err := body.Decode(&g); err != nil {
		t.Fatalf("the wire reader wrote the images of % x as JSON, which the general decoder refuses: %v", body.Bytes, err)
	}
	m := g.(map[string]any)
	oldImage, _ := m["old"].(map[string]any)
	newImage, _ := m["new"].(map[string]any)
	n, err := notification.FromMatch(notification.Match{Tenant: "t", RuleID: "r", Old: oldImage, New: newImage}, time.Time{})
	if err != nil {
		t.Fatalf("notification of % x: %v", body.Bytes, err)
	}
	for i, want := range []*string{n.Old, n.New} {
		if at[i] < 0 {
			continue
		}
		jsons++
		if got := written[i]; (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Fatalf("image %d of % x as JSON:\nwire    %v\ngeneral %v", i, body.Bytes, deref(got), deref(want))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// sameImage compares two projected images, NaN equal to itself.
func sameImage(a, b any) bool {
	ra, _ := a.(*rules.Record)
	rb, _ := b.(*rules.Record)
	if ra == nil || rb == nil {
		return ra == nil && rb == nil && a == nil && b == nil
	}
	if !slices.Equal(ra.Names, rb.Names) || len(ra.Values) != len(rb.Values) {
		return false
	}
	for i := range ra.Values {
		x, y := ra.Values[i], rb.Values[i]
		if dx, ok := x.(types.Double); ok {
			dy, ok := y.(types.Double)
			if !ok || math.Float64bits(float64(dx)) != math.Float64bits(float64(dy)) {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

// someOf returns a random sorted subset of names, at least one.
func someOf(rng *rand.Rand, names []string) []string {
	var out []string
	for _, n := range names {
		if rng.IntN(3) == 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = append(out, names[rng.IntN(len(names))])
	}
	slices.Sort(out)
	return out
}

// mangle returns a copy of b cut short, with a byte changed, or with a
// byte added.
func mangle(rng *rand.Rand, b []byte) []byte {
	out := slices.Clone(b)
	switch rng.IntN(3) {
	case 0:
		return out[:rng.IntN(len(out)+1)]
	case 1:
		if len(out) > 0 {
			out[rng.IntN(len(out))] = byte(rng.IntN(256))
		}
		return out
	default:
		i := rng.IntN(len(out) + 1)
		return slices.Insert(out, i, byte(rng.IntN(256)))
	}
}

// writeValue appends a random valid Avro encoding of a value of n, with
// edge values: integer limits, NaN, infinities, negative zero, numbers
// either side of where JSON writes them with an exponent, booleans
// other than 0 and 1 (read as false), strings that are not UTF-8, blocks
// framed with their byte size.
func writeValue(rng *rand.Rand, n *avro.SchemaNode, b []byte) []byte {
	switch n.Type {
	case "null":
		return b
	case "boolean":
		return append(b, []byte{0, 1, 1, 0, 2, 0xff}[rng.IntN(6)])
	case "int":
		v := []int64{0, 1, -1, 63, -64, 64, math.MaxInt32, math.MinInt32, int64(rng.Int32())}[rng.IntN(9)]
		return binary.AppendVarint(b, v)
	case "long":
		v := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1 << 53, rng.Int64() - rng.Int64(), 1_780_000_000_000}[rng.IntN(8)]
		return binary.AppendVarint(b, v)
	case "float":
		v := []float32{0, float32(math.Copysign(0, -1)), 1.5, float32(math.NaN()), float32(math.Inf(1)), rng.Float32(),
			1e-6, 1e-7, 1e20, 1e21}[rng.IntN(10)]
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	case "double":
		v := []float64{0, math.Copysign(0, -1), 600, math.NaN(), math.Inf(-1), math.MaxFloat64, 1<<53 + 1, rng.NormFloat64() * 1000,
			1e-6, 9.5e-7, 1.25e-7, 5e-324, 1e20, 1e21, -1.5e21}[rng.IntN(15)]
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	case "string", "bytes":
		s := []string{"", "acme", "Balance", "bal-1", "\xff\xfe", "ü€", "<a &amp; \"b\">\n\t\x01\u2028", fmt.Sprint(rng.IntN(1000))}[rng.IntN(8)]
		return append(binary.AppendVarint(b, int64(len(s))), s...)
	case "enum":
		return binary.AppendVarint(b, int64(rng.IntN(len(n.Symbols))))
	case "fixed":
		for range n.Size {
			b = append(b, byte(rng.IntN(256)))
		}
		return b
	case "record":
		for i := range n.Fields {
			b = writeValue(rng, &n.Fields[i].Type, b)
		}
		return b
	case "union":
		i := rng.IntN(len(n.Branches))
		return writeValue(rng, &n.Branches[i], binary.AppendVarint(b, int64(i)))
	case "array", "map":
		for range rng.IntN(3) {
			count := 1 + rng.IntN(3)
			var items []byte
			for range count {
				if n.Type == "map" {
					items = writeValue(rng, &avro.SchemaNode{Type: "string"}, items)
					items = writeValue(rng, n.Values, items)
				} else {
					items = writeValue(rng, n.Items, items)
				}
			}
			if rng.IntN(10) == 0 {
				b = binary.AppendVarint(b, -int64(count))
				b = binary.AppendVarint(b, int64(len(items)))
			} else {
				b = binary.AppendVarint(b, int64(count))
			}
			b = append(b, items...)
		}
		return binary.AppendVarint(b, 0)
	}
	panic("writeValue: no value for " + n.Type)
}
