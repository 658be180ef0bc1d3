package notification

import (
	"encoding/json"
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

func TestTruphoneFormat(t *testing.T) {
	n := Sample()
	n.Name = "USAGE_THRESHOLD"
	m := render(t, FormatTruphone, "", "", n)
	for k, v := range map[string]any{"id": n.ID, "type": "USAGE_THRESHOLD", "iccid": "dev-1", "subscription_id": "bal-1", "threshold": 80.0} {
		if got := get(m, k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	iccid, sub := `{"iccid":"8930000000023912","subscriptionId":"ZHNh"}`, `"from-rule"`
	n.New, n.Threshold = &iccid, nil
	n.Fields = map[string]string{"subscription_id": sub}
	m = render(t, FormatTruphone, "", "", n)
	if m["iccid"] != "8930000000023912" || m["subscription_id"] != "from-rule" {
		t.Errorf("iccid, subscription_id = %v, %v; want the entity's iccid and the rule's field", m["iccid"], m["subscription_id"])
	}
	if _, ok := m["threshold"]; ok {
		t.Error("threshold present without one")
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
