package avro

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/avro"
)

// invoiceEvent follows the envelope's shape but, as upstream schemas often
// do, names its entity record by its short name in "new", relative to the
// enclosing namespace. It also has an array and a map of records.
const invoiceEvent = `{"type": "record", "name": "Invoice", "namespace": "herald.events", "fields": [
	{"name": "entityId", "type": "string"},
	{"name": "old", "type": ["null", {"type": "record", "name": "InvoiceEntity", "fields": [
		{"name": "id", "type": "string"},
		{"name": "total", "type": "double"},
		{"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
			{"name": "sku", "type": "string"}
		]}}, "default": []},
		{"name": "taxes", "type": {"type": "map", "values": "Line"}, "default": {}}
	]}], "default": null},
	{"name": "new", "type": ["null", "InvoiceEntity"], "default": null}
]}`

// simEvent defines its entity with a dotted full name inside another
// namespace and refers to it by that name.
const simEvent = `{"type": "record", "name": "Sim", "namespace": "herald.events", "fields": [
	{"name": "old", "type": ["null", {"type": "record", "name": "herald.entities.Sim", "fields": [
		{"name": "iccid", "type": "string"}
	]}], "default": null},
	{"name": "new", "type": ["null", "herald.entities.Sim"], "default": null}
]}`

// absent, as a value in with's extra, removes the key.
type absent struct{}

// with returns a copy of m with the keys of extra set, or removed.
func with(m, extra map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range extra {
		if _, ok := v.(absent); ok {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func TestCheckRefusesWhatTheEncoderWouldDropOrChange(t *testing.T) {
	balance := avro.MustParse(eventVersions(t, "herald.events.Balance")[0])
	invoice := avro.MustParse(invoiceEvent)
	sim := avro.MustParse(simEvent)
	bal := func(extra map[string]any) map[string]any {
		return with(map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB",
			"total": json.Number("1000"), "used": json.Number("10"), "remaining": json.Number("990")}, extra)
	}
	event := func(extra map[string]any) map[string]any {
		return with(map[string]any{"eventId": "e-1", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
			"operation": "UPDATE", "occurredAt": time.Now(), "accountId": "acc-1", "old": bal(nil), "new": bal(nil)}, extra)
	}
	inv := func(extra map[string]any) map[string]any {
		return with(map[string]any{"id": "inv-1", "total": json.Number("12")}, extra)
	}

	tests := []struct {
		name        string
		schema      *avro.Schema
		in          map[string]any
		wantField   string // dotted path of the reported value; "" for none
		wantUnknown bool   // the report is an *UnknownFieldError
		wantMessage string // in the report's message
	}{
		{name: "valid update", schema: balance, in: event(nil)},
		{name: "null old image on create", schema: balance, in: event(map[string]any{"operation": "CREATE", "old": nil})},
		{name: "optional envelope field left out", schema: balance, in: event(map[string]any{"accountId": absent{}})},
		{name: "optional field inside the image null", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"planId": nil})})},
		{name: "set optional field inside the image", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"planId": "plan-1"})})},
		{name: "a double written as a float64", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"remaining": 1e300})})},
		{name: "the largest double", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"remaining": json.Number("1.7976931348623157e308")})})},
		{name: "a double too small to tell from zero", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"remaining": json.Number("1e-400")})})},
		{name: "unknown top-level key", schema: balance, in: event(map[string]any{"colour": "red"}),
			wantField: "colour", wantUnknown: true},
		{name: "unknown key in new", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"extra": json.Number("1")})}),
			wantField: "new.extra", wantUnknown: true},
		{name: "unknown key in old", schema: balance, in: event(map[string]any{"old": bal(map[string]any{"remainingg": json.Number("1")})}),
			wantField: "old.remainingg", wantUnknown: true},
		{name: "a double overflowing to infinity", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"remaining": json.Number("1e400")})}),
			wantField: "new.remaining", wantMessage: "(double)"},
		{name: "a negative double overflowing to infinity", schema: balance, in: event(map[string]any{"old": bal(map[string]any{"used": json.Number("-1e309")})}),
			wantField: "old.used", wantMessage: "(double)"},
		{name: "an integer of 400 digits for a double", schema: balance,
			in:        event(map[string]any{"new": bal(map[string]any{"remaining": json.Number("1" + strings.Repeat("0", 399))})}),
			wantField: "new.remaining", wantMessage: "(double)"},
		{name: "a string for a double", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"total": "lots"})}),
			wantField: "new.total", wantMessage: "must be a number (double)"},
		{name: "a required field left out", schema: balance, in: event(map[string]any{"new": bal(map[string]any{"unit": absent{}})}),
			wantField: "new.unit", wantMessage: "required"},
		{name: "valid input of a schema with short-name references", schema: invoice,
			in: map[string]any{"entityId": "i", "new": inv(map[string]any{"lines": []any{map[string]any{"sku": "a"}}, "taxes": map[string]any{"vat": map[string]any{"sku": "t"}}})}},
		{name: "unknown key in a record referenced by its short name", schema: invoice,
			in:        map[string]any{"entityId": "i", "new": inv(map[string]any{"extra": true})},
			wantField: "new.extra", wantUnknown: true},
		{name: "valid input of a schema with a dotted record name", schema: sim,
			in: map[string]any{"new": map[string]any{"iccid": "8944"}}},
		{name: "unknown key in a record referenced by its dotted name", schema: sim,
			in:        map[string]any{"new": map[string]any{"iccid": "8944", "imsi": "2341"}},
			wantField: "new.imsi", wantUnknown: true},
		{name: "unknown key in an array item", schema: invoice,
			in:        map[string]any{"entityId": "i", "old": inv(map[string]any{"lines": []any{map[string]any{"sku": "a"}, map[string]any{"sku": "b", "qty": json.Number("2")}}})},
			wantField: "old.lines[1].qty", wantUnknown: true},
		{name: "unknown key in a map value", schema: invoice,
			in:        map[string]any{"entityId": "i", "old": inv(map[string]any{"taxes": map[string]any{"vat": map[string]any{"rate": json.Number("0.2")}}})},
			wantField: `old.taxes["vat"].rate`, wantUnknown: true},
		{name: "a double overflowing in an array item's record", schema: avro.MustParse(amountsEvent),
			in:        map[string]any{"amounts": []any{map[string]any{"value": json.Number("1"), "count": json.Number("1")}, map[string]any{"value": json.Number("-1e999"), "count": json.Number("1")}}},
			wantField: "amounts[1].value", wantMessage: "(double)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(tt.schema, tt.in)
			checkReport(t, err, tt.wantField, tt.wantUnknown, tt.wantMessage)
		})
	}
}

func TestCheckReportsTheFirstUnknownKeyInKeyOrder(t *testing.T) {
	s := avro.MustParse(simEvent)
	in := map[string]any{"new": map[string]any{"iccid": "8944", "zz": "1", "mm": "2", "bb": "3", "yy": "4", "cc": "5"}}
	for range 50 {
		_, err := Check(s, in)
		checkReport(t, err, "new.bb", true, "")
	}
}

// checkReport fails t unless err reports wantField (no error when it is
// ""), as an *UnknownFieldError when wantUnknown, else as a *FieldError
// whose message holds wantMessage.
func checkReport(t *testing.T, err error, wantField string, wantUnknown bool, wantMessage string) {
	t.Helper()
	var (
		uf *UnknownFieldError
		fe *FieldError
	)
	switch {
	case wantField == "" && err != nil:
		t.Errorf("Check refused valid input: %v", err)
	case wantField == "":
	case wantUnknown && !errors.As(err, &uf):
		t.Errorf("Check error = %v, want *UnknownFieldError for %s", err, wantField)
	case wantUnknown && uf.Field != wantField:
		t.Errorf("Check reported %q, want %q", uf.Field, wantField)
	case wantUnknown:
	case !errors.As(err, &fe):
		t.Errorf("Check error = %v, want *FieldError for %s", err, wantField)
	case fe.Field != wantField || !strings.Contains(fe.Message, wantMessage):
		t.Errorf("Check reported %q: %q, want %q with %q", fe.Field, fe.Message, wantField, wantMessage)
	}
}

// amountsEvent has an int, a long and a float, and an array of records.
const amountsEvent = `{"type": "record", "name": "Amounts", "namespace": "herald.events", "fields": [
	{"name": "count", "type": "int", "default": 0},
	{"name": "bytes", "type": "long", "default": 0},
	{"name": "ratio", "type": "float", "default": 0},
	{"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
	{"name": "amounts", "type": {"type": "array", "items": {"type": "record", "name": "Amount", "fields": [
		{"name": "value", "type": "double"},
		{"name": "count", "type": "int"}
	]}}, "default": []}
]}`

func TestCheckTakesOnlyNumbersTheirTypeHolds(t *testing.T) {
	s := avro.MustParse(amountsEvent)
	tests := []struct {
		field, number string
		wantMessage   string // "" when the number is taken
	}{
		{"count", "0", ""},
		{"count", "-0", ""},
		{"count", "2147483647", ""},
		{"count", "-2147483648", ""},
		{"count", "2147483648", "from -2147483648 to 2147483647"},
		{"count", "-2147483649", "from -2147483648 to 2147483647"},
		{"count", "1.5", "without a fraction or exponent"},
		{"count", "1.0", "without a fraction or exponent"},
		{"count", "1e0", "without a fraction or exponent"},
		{"count", "1E2", "without a fraction or exponent"},
		{"bytes", "9223372036854775807", ""},
		{"bytes", "-9223372036854775808", ""},
		{"bytes", "9223372036854775808", "from -9223372036854775808 to 9223372036854775807"},
		{"bytes", "1" + strings.Repeat("0", 400), "from -9223372036854775808 to 9223372036854775807"},
		{"bytes", "2.0", "without a fraction or exponent"},
		{"at", "1700000000000", ""},
		{"at", "1700000000000.5", "without a fraction or exponent"},
		{"ratio", "3.4e38", ""},
		{"ratio", "0.25", ""},
		{"ratio", "3.5e38", "(float)"},
		{"ratio", "-1e39", "(float)"},
	}
	for _, tt := range tests {
		t.Run(tt.field+"="+tt.number[:min(len(tt.number), 24)], func(t *testing.T) {
			_, err := Check(s, map[string]any{tt.field: json.Number(tt.number)})
			if tt.wantMessage == "" {
				checkReport(t, err, "", false, "")
				return
			}
			checkReport(t, err, tt.field, false, tt.wantMessage)
		})
	}
}

// shapes is a record whose fields are unions with more than one branch
// besides null: two records with different fields (the first has every
// field the second has), and a string or a long.
const shapes = `{"type": "record", "name": "Shapes", "namespace": "herald.test", "fields": [
	{"name": "shape", "type": ["null",
		{"type": "record", "name": "Circle", "fields": [
			{"name": "radius", "type": "double"}
		]},
		{"type": "record", "name": "Labelled", "fields": [
			{"name": "radius", "type": "double"},
			{"name": "label", "type": "string"}
		]},
		{"type": "record", "name": "Square", "fields": [
			{"name": "side", "type": "double"}
		]}
	], "default": null},
	{"name": "ref", "type": ["null", "string", "long"], "default": null},
	{"name": "size", "type": ["null", "float", "double"], "default": null}
]}`

func TestCheckTakesAUnionValueAnyBranchTakes(t *testing.T) {
	s := avro.MustParse(shapes)
	tests := []struct {
		name        string
		in          map[string]any
		want        map[string]any // the value read back after encoding
		wantField   string         // "" when taken
		wantUnknown bool
	}{
		{name: "the first record branch",
			in:   map[string]any{"shape": map[string]any{"radius": json.Number("2")}},
			want: map[string]any{"shape": map[string]any{"radius": 2.0}, "ref": nil, "size": nil}},
		{name: "a record branch whose fields an earlier branch lacks",
			in:   map[string]any{"shape": map[string]any{"radius": json.Number("2"), "label": "r"}},
			want: map[string]any{"shape": map[string]any{"radius": 2.0, "label": "r"}, "ref": nil, "size": nil}},
		{name: "the last record branch",
			in:   map[string]any{"shape": map[string]any{"side": json.Number("3")}},
			want: map[string]any{"shape": map[string]any{"side": 3.0}, "ref": nil, "size": nil}},
		{name: "the string branch of string or long",
			in:   map[string]any{"ref": "r-1"},
			want: map[string]any{"shape": nil, "ref": "r-1", "size": nil}},
		{name: "the long branch of string or long",
			in:   map[string]any{"ref": json.Number("42")},
			want: map[string]any{"shape": nil, "ref": int64(42), "size": nil}},
		{name: "a number too large for the float branch goes to the double one",
			in:   map[string]any{"size": json.Number("1e300")},
			want: map[string]any{"shape": nil, "ref": nil, "size": 1e300}},
		{name: "null", in: map[string]any{"shape": nil, "ref": nil},
			want: map[string]any{"shape": nil, "ref": nil, "size": nil}},
		{name: "a key no record branch has", in: map[string]any{"shape": map[string]any{"side": json.Number("3"), "colour": "red"}},
			wantField: "shape.colour", wantUnknown: true},
		{name: "keys of two different branches", in: map[string]any{"shape": map[string]any{"side": json.Number("3"), "radius": json.Number("1")}},
			wantField: "shape"},
		{name: "a bool for string or long", in: map[string]any{"ref": true}, wantField: "ref"},
		{name: "a long out of range for string or long", in: map[string]any{"ref": json.Number("9223372036854775808")}, wantField: "ref"},
		{name: "a number too large for the double branch too", in: map[string]any{"size": json.Number("1e400")}, wantField: "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Check(s, tt.in)
			checkReport(t, err, tt.wantField, tt.wantUnknown, "")
			if tt.want == nil || err != nil {
				return
			}
			b, err := s.Encode(got)
			if err != nil {
				t.Fatalf("encode the checked value: %v", err)
			}
			var back any
			if _, err := s.Decode(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.want) {
				t.Errorf("reads back as %#v\nwant %#v", back, tt.want)
			}
		})
	}
}

// balanceUpdate is a Balance update event as the ingest API hands it to
// Check: numbers as json.Number, the time already parsed.
func balanceUpdate() map[string]any {
	bal := func(used, remaining string) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB",
			"total": json.Number("1000"), "used": json.Number(used), "remaining": json.Number(remaining)}
	}
	return map[string]any{"eventId": "01JNQ7Z8X0ABCDEFGHJKMNPQRS", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
		"operation": "UPDATE", "occurredAt": time.Now(), "accountId": "acc-1", "deviceId": nil, "correlationId": nil,
		"old": bal("400", "600"), "new": bal("500", "500")}
}

func BenchmarkCheck(b *testing.B) {
	s := avro.MustParse(eventVersions(b, "herald.events.Balance")[0])
	in := balanceUpdate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Check(s, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckAndEncode is what ingest does with an event's values: the
// check, then the encoding, which the check's cost is to be read against.
func BenchmarkCheckAndEncode(b *testing.B) {
	s := Schema{ID: 1, Schema: avro.MustParse(eventVersions(b, "herald.events.Balance")[0])}
	in := balanceUpdate()
	b.ReportAllocs()
	for b.Loop() {
		v, err := Check(s.Schema, in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckAllocatesLittleForAFittingValue pins the cost of checking an
// event that fits: the values Check returns and little else, not the
// schema's tree, which is made once per schema.
func TestCheckAllocatesLittleForAFittingValue(t *testing.T) {
	s := avro.MustParse(eventVersions(t, "herald.events.Balance")[0])
	in := balanceUpdate()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Check(s, in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 20 {
		t.Errorf("Check of a Balance update allocates %.0f times, want at most 20", allocs)
	}
}
