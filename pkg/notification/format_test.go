package notification

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func render(t *testing.T, name, tmpl, ct string, n *Notification) map[string]any {
	t.Helper()
	f, err := NewFormat(name, tmpl, ct)
	if err != nil {
		t.Fatal(err)
	}
	b, got, err := f.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := ct; want != "" && got != want {
		t.Errorf("content type = %q, want %q", got, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s payload is not JSON: %s", name, b)
	}
	return m
}

func get(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	return v
}

func TestTotogiFormat(t *testing.T) {
	n := Sample()
	n.CreatedAt = n.CreatedAt.AddDate(55, 2, 4) // 2025-03-05
	m := render(t, FormatTotogi, "", "", n)
	want := map[string]any{
		"providerid":          "tenant",
		"invocationtimestamp": "1970-01-01T00:00:00.000Z",
		"day":                 5.0, "month": 3.0, "year": 2025.0,
		"eventdata.accountid": "acct-1",
		"eventdata.deviceid":  "dev-1",
		"eventdata.charginginformation.chargingsessionidentifier":      "session-1",
		"eventdata.notificationInformation.name":                       "UnitAllowanceThreshold",
		"eventdata.notificationInformation.state":                      "low",
		"eventdata.notificationInformation.prevstate":                  "ok",
		"eventdata.notificationInformation.threshold":                  80.0,
		"eventdata.notificationInformation.notificationfields.percent": 15.0,
	}
	for k, v := range want {
		if got := get(m, k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

// TestTruphoneFormat pins where Truphone's payload takes the SIM and the
// subscription from, and that a notification lacking either is refused,
// naming the field, rather than sent with another id in its place.
func TestTruphoneFormat(t *testing.T) {
	str := func(v string) *string { return &v }
	tests := []struct {
		name   string
		fields map[string]string
		device *string
		new    *string
		want   map[string]any // iccid and subscription_id
		err    string         // the field the error names
	}{
		{"the rule's fields", map[string]string{"iccid": `"8930001"`, "subscription_id": `"sub-rule"`}, str("dev-1"),
			str(`{"iccid":"8930002","planId":"plan-1"}`), map[string]any{"iccid": "8930001", "subscription_id": "sub-rule"}, ""},
		{"the event's device and the balance's plan", nil, str("8930001"),
			str(`{"id":"bal-1","planId":"plan-1"}`), map[string]any{"iccid": "8930001", "subscription_id": "plan-1"}, ""},
		{"a SIM's own iccid and subscription", nil, nil,
			str(`{"id":"sim-1","iccid":"8930002","subscriptionId":"sub-1"}`), map[string]any{"iccid": "8930002", "subscription_id": "sub-1"}, ""},
		{"fields the rule computed as null", map[string]string{"iccid": "null", "subscription_id": "null"}, str("8930001"),
			str(`{"planId":"plan-1"}`), map[string]any{"iccid": "8930001", "subscription_id": "plan-1"}, ""},
		{"no SIM anywhere", map[string]string{"subscription_id": `"sub-rule"`}, nil, str(`{"id":"bal-1"}`), nil, "iccid"},
		{"no subscription anywhere", nil, str("8930001"), str(`{"id":"bal-1"}`), nil, "subscription_id"},
		{"a subscription computed as null, none on the entity", map[string]string{"subscription_id": "null"}, str("8930001"),
			str(`{"id":"bal-1","planId":null}`), nil, "subscription_id"},
	}
	f, err := NewFormat(FormatTruphone, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := Sample()
			n.Name, n.Fields, n.Event.DeviceID, n.New, n.Old = "USAGE_THRESHOLD", tt.fields, tt.device, tt.new, nil
			b, _, err := f.Render(n)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), "no "+tt.err) {
					t.Errorf("Render = %s, %v; want an error naming %s", b, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{"id": n.ID, "type": "USAGE_THRESHOLD", "threshold": 80.0}
			for k, v := range tt.want {
				want[k] = v
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("payload %v, want %v", got, want)
			}
		})
	}

	n := Sample()
	n.Name, n.Threshold = "SUBSCRIPTION_END", nil
	n.Fields = map[string]string{"iccid": `"8930001"`, "subscription_id": `"sub-1"`}
	m := render(t, FormatTruphone, "", "", n)
	if _, ok := m["threshold"]; ok || m["type"] != "SUBSCRIPTION_END" {
		t.Errorf("payload %v, want SUBSCRIPTION_END without a threshold", m)
	}
}

func TestTemplateFormat(t *testing.T) {
	m := render(t, FormatTemplate, `{"who":{{json .event.accountId}},"left":{{.new.remaining}},"what":"{{.name}}/{{.state}}"}`, "application/json", Sample())
	if m["who"] != "acct-1" || m["left"] != 150.0 || m["what"] != "UnitAllowanceThreshold/low" {
		t.Errorf("template payload = %v", m)
	}
	for _, bad := range []struct{ body, ct string }{{"{{.name", ""}, {`{"a":{{.name}}}`, ""}, {"x", "not a type"}, {"", ""}} {
		if _, err := NewFormat(FormatTemplate, bad.body, bad.ct); err == nil {
			t.Errorf("template %q (%q) accepted", bad.body, bad.ct)
		}
	}
	f, err := NewFormat(FormatTemplate, "{{.name}} is {{.state}}", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	b, ct, err := f.Render(Sample())
	if err != nil || string(b) != "UnitAllowanceThreshold is low" || ct != "text/plain" {
		t.Errorf("text template = %q %q %v", b, ct, err)
	}
}

func TestNativeFormatIsJSON(t *testing.T) {
	n := Sample()
	f, _ := NewFormat("", "", "")
	b, _, err := f.Render(n)
	want, _ := n.JSON()
	if err != nil || string(b) != string(want) {
		t.Errorf("native = %s, %v; want %s", b, err, want)
	}
	if _, err := NewFormat("xml", "", ""); err == nil {
		t.Error("unknown format accepted")
	}
}
