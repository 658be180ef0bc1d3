package avro

import (
	"errors"
	"testing"

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

func TestCheckFields(t *testing.T) {
	balance := avro.MustParse(eventVersions(t, "herald.events.Balance")[0])
	invoice := avro.MustParse(invoiceEvent)
	sim := avro.MustParse(simEvent)
	bal := func(extra map[string]any) map[string]any {
		m := map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000.0, "used": 10.0, "remaining": 990.0}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	inv := func(extra map[string]any) map[string]any {
		m := map[string]any{"id": "inv-1", "total": 12.0}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	tests := []struct {
		name        string
		schema      *avro.Schema
		in          map[string]any
		wantUnknown string // dotted path of the reported field; "" for none
	}{
		{"valid update", balance,
			map[string]any{"eventId": "e-1", "operation": "UPDATE", "accountId": "acc-1", "old": bal(nil), "new": bal(nil)}, ""},
		{"null old image on create", balance,
			map[string]any{"eventId": "e-1", "operation": "CREATE", "old": nil, "new": bal(nil)}, ""},
		{"null optional field inside the image", balance,
			map[string]any{"new": bal(map[string]any{"planId": nil}), "deviceId": nil}, ""},
		{"set optional field inside the image", balance,
			map[string]any{"new": bal(map[string]any{"planId": "plan-1"})}, ""},
		{"unknown top-level key", balance,
			map[string]any{"eventId": "e-1", "colour": "red"}, "colour"},
		{"unknown key in new", balance,
			map[string]any{"new": bal(map[string]any{"extra": 1.0})}, "new.extra"},
		{"unknown key in old", balance,
			map[string]any{"old": bal(map[string]any{"remainingg": 1.0})}, "old.remainingg"},
		{"valid input of a schema with short-name references", invoice,
			map[string]any{"new": inv(map[string]any{"lines": []any{map[string]any{"sku": "a"}}, "taxes": map[string]any{"vat": map[string]any{"sku": "t"}}})}, ""},
		{"unknown key in a record referenced by its short name", invoice,
			map[string]any{"new": inv(map[string]any{"extra": true})}, "new.extra"},
		{"valid input of a schema with a dotted record name", sim,
			map[string]any{"new": map[string]any{"iccid": "8944"}}, ""},
		{"unknown key in a record referenced by its dotted name", sim,
			map[string]any{"new": map[string]any{"iccid": "8944", "imsi": "2341"}}, "new.imsi"},
		{"unknown key in an array item", invoice,
			map[string]any{"old": inv(map[string]any{"lines": []any{map[string]any{"sku": "a"}, map[string]any{"sku": "b", "qty": 2.0}}})}, "old.lines[1].qty"},
		{"unknown key in a map value", invoice,
			map[string]any{"old": inv(map[string]any{"taxes": map[string]any{"vat": map[string]any{"rate": 0.2}}})}, `old.taxes["vat"].rate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFields(tt.schema, tt.in)
			var uf *UnknownFieldError
			switch {
			case tt.wantUnknown == "" && err != nil:
				t.Errorf("CheckFields refused valid input: %v", err)
			case tt.wantUnknown == "":
			case !errors.As(err, &uf):
				t.Errorf("CheckFields error = %v, want *UnknownFieldError for %s", err, tt.wantUnknown)
			case uf.Field != tt.wantUnknown:
				t.Errorf("CheckFields reported %q, want %q", uf.Field, tt.wantUnknown)
			}
		})
	}
}
