package adminapi_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/event"
)

func TestRuleIsCheckedAgainstTheEntitySchemaWhenSaved(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	body := func(when string) string {
		return `{"name":"r","on":{"entityTypes":["Balance"]},"when":` + quote(when) + `,"notification":{"name":"N","state":"s"}}`
	}
	for _, tc := range []struct {
		name, when, field, text string
	}{
		{"a field no version has", "new.remainng < 10.0", "when", "undefined field 'remainng'"},
		{"its position", "true &&\n  new.remainng < 10.0", "when", "2:6"},
		{"a condition that is not a bool", "new.remaining", "when", "must be a bool"},
		{"a syntax error", "new.remaining <", "when", "1:16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/rules", "/v1/rules:validate"} {
				r := s.want(http.StatusBadRequest, "POST", path, key, body(tc.when))
				if !slices.Contains(r.fields(), tc.field) || !strings.Contains(r.raw, tc.text) {
					t.Errorf("POST %s: problem %s, want field %q and %q", path, r.raw, tc.field, tc.text)
				}
			}
		})
	}
	s.want(http.StatusBadRequest, "POST", "/v1/rules", key,
		`{"name":"r","on":{"entityTypes":["Spaceship"]},"when":"true","notification":{"name":"N","state":"s"}}`)
	if r := s.want(http.StatusOK, "POST", "/v1/rules:validate", key, body("crossedBelow(old.remaining, new.remaining, 100) AND isnull(new.planId)")); r.body["valid"] != true {
		t.Errorf("validate: %s", r.raw)
	}
	if r := s.want(http.StatusOK, "GET", "/v1/rules", key, ""); len(r.items()) != 0 {
		t.Errorf("validate or a refused create stored a rule: %s", r.raw)
	}
}

func TestRuleReplaceTakesIfMatch(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	id := s.rule(key, "low", "")
	s.want(http.StatusOK, "PUT", "/v1/rules/"+id, key, ruleBody("lower", ""), "If-Match", `"1"`)
	s.want(http.StatusPreconditionFailed, "PUT", "/v1/rules/"+id, key, ruleBody("lowest", ""), "If-Match", `"1"`)
	r := s.want(http.StatusOK, "GET", "/v1/rules/"+id, key, "")
	if r.str("name") != "lower" || r.body["version"] != float64(2) {
		t.Errorf("after one replace and one refused: %s", r.raw)
	}
}

func TestRuleTestAnswersWhetherItFiresAndTheNotification(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	rule := `{"name":"low","on":{"entityTypes":["Balance"],"operations":["UPDATE"]},` +
		`"when":"crossedBelow(pct(old.remaining, old.total), pct(new.remaining, new.total), 20)",` +
		`"notification":{"name":"UnitAllowanceThreshold","state":"low","fields":{"left":"new.remaining"}}}`
	sample := func(oldRem, newRem string) string {
		img := func(rem string) string {
			return `{"id":"b","accountId":"a","unit":"MB","total":1000,"used":0,"remaining":` + rem + `}`
		}
		return `{"entityType":"Balance","entityId":"b","operation":"UPDATE","accountId":"a","old":` + img(oldRem) + `,"new":` + img(newRem) + `}`
	}
	r := s.want(http.StatusOK, "POST", "/v1/rules:test", key, `{"rule":`+rule+`,"event":`+sample("300", "150")+`}`)
	n, _ := r.body["notification"].(map[string]any)
	fields, _ := n["fields"].(map[string]any)
	if r.body["fired"] != true || n["name"] != "UnitAllowanceThreshold" || n["state"] != "low" || fields["left"] != float64(150) {
		t.Errorf("crossing 20%%: %s", r.raw)
	}
	r = s.want(http.StatusOK, "POST", "/v1/rules:test", key, `{"rule":`+rule+`,"event":`+sample("150", "100")+`}`)
	if r.body["fired"] != false || r.body["notification"] != nil {
		t.Errorf("already below: %s", r.raw)
	}
	id := s.want(http.StatusCreated, "POST", "/v1/rules", key, rule).str("id")
	if r := s.want(http.StatusOK, "POST", "/v1/rules:test", key, `{"ruleId":"`+id+`","event":`+sample("300", "150")+`}`); r.body["fired"] != true {
		t.Errorf("a stored rule by id: %s", r.raw)
	}
	r = s.want(http.StatusBadRequest, "POST", "/v1/rules:test", key, `{"rule":`+rule+`,"event":`+strings.Replace(sample("300", "150"), `"total":1000,"used":0,"remaining":150`, `"total":"x","used":0,"remaining":150`, 1)+`}`)
	if !slices.Contains(r.fields(), "event.new.total") {
		t.Errorf("a sample event off its schema names %v, want event.new.total", r.fields())
	}
	// A sample the ingest API would refuse is refused, not evaluated with
	// the value changed.
	for _, tc := range []struct{ name, event, field string }{
		{"a double overflowing to infinity", sample("300", "1e400"), "event.new.remaining"},
		{"an integer of 400 digits for a double", sample("1"+strings.Repeat("0", 399), "150"), "event.old.remaining"},
		{"invalid UTF-8", strings.Replace(sample("300", "150"), `"accountId":"a"`, "\"accountId\":\"\xff\xfea\"", 1), "event.accountId"},
	} {
		r := s.want(http.StatusBadRequest, "POST", "/v1/rules:test", key, `{"rule":`+rule+`,"event":`+tc.event+`}`)
		if !slices.Contains(r.fields(), tc.field) {
			t.Errorf("%s: problem names %v, want %s", tc.name, r.fields(), tc.field)
		}
	}
}

func TestEventTypeFieldsShowANewVersionWithoutRestart(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	r := s.want(http.StatusOK, "GET", "/v1/event-types", key, "")
	var types []string
	for _, it := range r.items() {
		types = append(types, it["entityType"].(string))
	}
	for _, want := range []string{"Balance", "Plan", "Sim", "Commitment"} {
		if !slices.Contains(types, want) {
			t.Errorf("event types %v lack %s", types, want)
		}
	}
	names := func() []string {
		r := s.want(http.StatusOK, "GET", "/v1/event-types/Balance/fields", key, "")
		var out []string
		list, _ := r.body["fields"].([]any)
		for _, f := range list {
			out = append(out, f.(map[string]any)["name"].(string))
		}
		return out
	}
	if got := names(); !slices.Contains(got, "remaining") || slices.Contains(got, "rolloverAmount") {
		t.Fatalf("Balance fields %v", got)
	}
	// A new version of Balance, with a field added with its default.
	reg := srClient(t, s)
	subject := event.Subject(s.cfg.Kafka.Topics().Events, "Balance")
	latest, err := reg.Latest(t.Context(), subject)
	if err != nil {
		t.Fatal(err)
	}
	v2 := withField(t, latest.Schema.String(), `{"name":"rolloverAmount","type":["null","double"],"default":null}`)
	if _, err := reg.Client().CreateSchema(t.Context(), subject, sr.Schema{Schema: v2, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Contains(got, "rolloverAmount") {
		t.Errorf("after v2, Balance fields %v lack rolloverAmount", got)
	}
	s.want(http.StatusCreated, "POST", "/v1/rules", key,
		`{"name":"r","on":{"entityTypes":["Balance"]},"when":"new.rolloverAmount > 0.0","notification":{"name":"N","state":"s"}}`)
	s.want(http.StatusNotFound, "GET", "/v1/event-types/Spaceship/fields", key, "")
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func srClient(t *testing.T, s *adminStack) *havro.Registry {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(s.cfg.Registry.URL))
	if err != nil {
		t.Fatal(err)
	}
	return havro.NewRegistry(cl, 0)
}

// withField returns an event schema with one more field in its entity
// record (the record of its old image).
func withField(t *testing.T, schema, field string) string {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal([]byte(schema), &root); err != nil {
		t.Fatal(err)
	}
	var f any
	if err := json.Unmarshal([]byte(field), &f); err != nil {
		t.Fatal(err)
	}
	for _, fd := range root["fields"].([]any) {
		fm := fd.(map[string]any)
		if fm["name"] != "old" {
			continue
		}
		for _, b := range fm["type"].([]any) {
			if rec, ok := b.(map[string]any); ok {
				rec["fields"] = append(rec["fields"].([]any), f)
			}
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestTimedRuleIsCheckedWhenSaved pins that a rule firing at a time is
// saved through the same checks, at and timerFor named in the problem.
func TestTimedRuleIsCheckedWhenSaved(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	body := func(at, timerFor string) string {
		b := `{"name":"renewal reminder","on":{"entityTypes":["Plan"]},"when":"new.status == 'active'",` +
			`"notification":{"name":"RenewalReminder","state":"due"},"at":` + quote(at)
		if timerFor != "" {
			b += `,"timerFor":` + quote(timerFor)
		}
		return b + "}"
	}
	for _, tc := range []struct {
		name, at, timerFor, field, text string
	}{
		{"at that is not a timestamp", "new.name", "", "at", "must be a google.protobuf.Timestamp"},
		{"at naming a field no version has", "new.endsAt - duration('72h')", "", "at", "undefined field 'endsAt'"},
		{"a bad time of day helper call", "dayAt(new.expiresAt, 1, 9, tenant.timeZone)", "", "at", "dayAt"},
		{"timerFor that is not a string", "new.expiresAt", "new.expiresAt", "timerFor", "must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/rules", "/v1/rules:validate"} {
				r := s.want(http.StatusBadRequest, "POST", path, key, body(tc.at, tc.timerFor))
				if !slices.Contains(r.fields(), tc.field) || !strings.Contains(r.raw, tc.text) {
					t.Errorf("POST %s: problem %s, want field %q and %q", path, r.raw, tc.field, tc.text)
				}
			}
		})
	}
	r := s.want(http.StatusBadRequest, "POST", "/v1/rules", key,
		`{"name":"r","on":{"entityTypes":["Plan"]},"when":"true","timerFor":"new.id","notification":{"name":"N","state":"s"}}`)
	if !slices.Contains(r.fields(), "timerFor") {
		t.Errorf("timerFor without at: problem %s, want field timerFor", r.raw)
	}
	saved := s.want(http.StatusCreated, "POST", "/v1/rules", key, body(`dayAt(new.expiresAt, -3, "09:00", tenant.timeZone)`, ""))
	if saved.str("at") != `dayAt(new.expiresAt, -3, "09:00", tenant.timeZone)` {
		t.Errorf("saved rule %s, want its at kept", saved.raw)
	}
}

// TestRuleTestShowsTheTimers pins that rules:test answers what a sample
// event does to a timed rule's timers: the due time, in the tenant's zone
// where the rule places a time of day, or a cancellation.
func TestRuleTestShowsTheTimers(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	s.want(http.StatusOK, "PATCH", "/v1/settings", key, `{"timeZone":"Europe/Madrid"}`)
	rule := `{"name":"paid reminder","on":{"entityTypes":["Invoice"],"operations":["CREATE","UPDATE"]},` +
		`"at":"dayAt(new.deliveredAt, 2, '09:00', tenant.timeZone)","when":"new.paidAt == null",` +
		`"notification":{"name":"InvoiceDeliveryPlusDays","state":"elapsed"}}`
	invoice := func(op, deliveredAt string) string {
		img := `{"id":"inv-1","accountId":"a","status":"posted","amount":120`
		if deliveredAt != "" {
			img += `,"deliveredAt":"` + deliveredAt + `"`
		}
		img += "}"
		ev := `{"entityType":"Invoice","entityId":"inv-1","operation":"` + op + `","accountId":"a","old":` + img
		if op != "DELETE" {
			ev += `,"new":` + img
		}
		return ev + "}"
	}
	timers := func(event string) []any {
		t.Helper()
		r := s.want(http.StatusOK, "POST", "/v1/rules:test", key, `{"rule":`+rule+`,"event":`+event+`}`)
		if r.body["fired"] != false {
			t.Errorf("a timed rule fired on the change: %s", r.raw)
		}
		ts, ok := r.body["timers"].([]any)
		if !ok {
			t.Fatalf("no timers in %s", r.raw)
		}
		return ts
	}
	// Delivered at 00:30 on 28 March Madrid time: due 09:00 Madrid time
	// on the 30th, after the clocks went forward (07:00 UTC).
	got := timers(invoice("UPDATE", "2026-03-27T23:30:00Z"))
	if len(got) != 1 || jsonText(t, got[0]) != `{"due":"2026-03-30T07:00:00Z","entity":"inv-1","entityType":"Invoice","rule":"test"}` {
		t.Errorf("delivered: timers %v", got)
	}
	got = timers(invoice("UPDATE", ""))
	if len(got) != 1 || jsonText(t, got[0]) != `{"cancel":true,"entity":"inv-1","entityType":"Invoice","rule":"test"}` {
		t.Errorf("not delivered: timers %v, want a cancellation", got)
	}
	got = timers(invoice("DELETE", "2026-03-27T23:30:00Z"))
	if len(got) != 1 || got[0].(map[string]any)["cancel"] != true {
		t.Errorf("deleted: timers %v, want a cancellation", got)
	}
}
