package catalog_test

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/avro"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/catalog"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/schemas"
)

// sample is one entity-change event and what the entry makes of it.
type sample struct {
	name     string
	op       string // CREATE, UPDATE or DELETE
	old, new map[string]any
	at       time.Time // occurredAt; zero for now
	deviceID string    // the envelope's deviceId; empty for null
	writer   int       // the schema version that writes the event; 0 for the latest
	fire     bool

	// unwatched marks an event of an operation the entry does not watch:
	// the evaluator never runs the rule on it, so it does not fire, but its
	// condition is still evaluated and must give whenHolds.
	unwatched bool
	whenHolds bool
	// excludes names the entry's exclusion the sample shows.
	excludes string
	// edge marks a sample on the edge of the condition: equal to a limit.
	edge bool
	// sparse marks a sample whose images hold only the fields the schema
	// requires, with no accountId or deviceId in the envelope.
	sparse bool

	// fields are the notification fields a firing sample carries, as
	// JSON; required when the entry computes fields.
	fields map[string]any
	// prev and threshold are the previous state ("" for none) and the
	// threshold (nil for none) a firing sample's notification carries;
	// checked in the payload of Totogi's and Truphone's entries.
	prev      string
	threshold *float64
	// truphone is the iccid and subscription_id of a firing Truphone
	// sample's payload; renderErr, when set, is the field the payload
	// cannot be made without, which its error must name.
	truphone  map[string]any
	renderErr string
}

// entryCases are the samples of one entry installed with params.
type entryCases struct {
	entry  string
	params map[string]any
	cases  []sample
}

// builtin are the built-in entity types, as the evaluator and the admin
// API see them: from every committed version of their schemas.
type builtin struct {
	entities map[string]rules.Entity
	versions map[string][]*avro.Schema
}

func loadBuiltin(t *testing.T) builtin {
	t.Helper()
	b := builtin{entities: map[string]rules.Entity{}, versions: map[string][]*avro.Schema{}}
	for _, rec := range schemas.Events() {
		name := strings.TrimPrefix(rec.Name, schemas.EventNamespace+".")
		for _, text := range rec.Versions {
			s, err := avro.Parse(text)
			if err != nil {
				t.Fatalf("%s: %v", rec.Name, err)
			}
			b.versions[name] = append(b.versions[name], s)
		}
		e, err := rules.EntityFromSchemas(name, b.versions[name])
		if err != nil {
			t.Fatal(err)
		}
		b.entities[name] = e
	}
	return b
}

// compile installs an entry with params and compiles its rule as the
// evaluator does.
func (b builtin) compile(t *testing.T, entry string, params map[string]any) (*rules.Rule, configstore.Rule) {
	t.Helper()
	e, ok := catalog.New().Lookup(entry)
	if !ok {
		t.Fatalf("no catalog entry %s", entry)
	}
	spec, err := e.Rule(params, b.entities)
	if err != nil {
		t.Fatalf("%s.Rule(%v): %v", entry, params, err)
	}
	r, err := rules.NewCompiler(rules.DefaultLimits).Compile("acme", "rul_"+entry, spec, b.entities)
	if err != nil {
		t.Fatalf("%s: compile %q: %v", entry, spec.When, err)
	}
	return r, spec
}

// schema returns the schema that writes a sample of entityType.
func (b builtin) schema(t *testing.T, entityType string, s sample) *avro.Schema {
	t.Helper()
	versions := b.versions[entityType]
	if len(versions) == 0 {
		t.Fatalf("no schema for entity type %s", entityType)
	}
	if s.writer > 0 {
		return versions[s.writer-1]
	}
	return versions[len(versions)-1]
}

// event encodes a sample as a producer would, with its entity type's
// schema, and decodes it back: the rule sees what it would see in Kafka.
func (b builtin) event(t *testing.T, entityType string, s sample) map[string]any {
	t.Helper()
	schema := b.schema(t, entityType, s)
	at := s.at
	if at.IsZero() {
		at = time.Now()
	}
	var account, device any = "acc-1", nil
	if s.deviceID != "" {
		device = s.deviceID
	}
	if s.sparse {
		account = nil
	}
	envelope := map[string]any{
		"eventId": "01JTESTEVENT", "tenantId": "acme", "entityType": entityType, "entityId": "e-1",
		"operation": s.op, "occurredAt": at, "accountId": account, "deviceId": device, "correlationId": nil,
		"old": image(s.old), "new": image(s.new),
	}
	checked, err := havro.Check(schema, envelope)
	if err != nil {
		t.Fatalf("sample %q: %v", s.name, err)
	}
	raw, err := schema.Encode(checked)
	if err != nil {
		t.Fatalf("sample %q does not fit the %s schema: %v", s.name, entityType, err)
	}
	var decoded any
	if _, err := schema.Decode(raw, &decoded); err != nil {
		t.Fatalf("sample %q: decode: %v", s.name, err)
	}
	return decoded.(map[string]any)
}

func image(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// requiredFields are the fields of an entity's image that the schema that
// writes s has no default for.
func (b builtin) requiredFields(t *testing.T, entityType string, s sample) []string {
	t.Helper()
	var out []string
	for _, f := range b.schema(t, entityType, s).Root().Fields {
		if f.Name != "old" { // where the image's record is declared
			continue
		}
		for _, br := range f.Type.Branches {
			for _, imgField := range br.Fields {
				if !imgField.HasDefault {
					out = append(out, imgField.Name)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no required fields found in its schema", entityType)
	}
	return out
}

// check runs the rule on one sample as the evaluator does, and checks
// what it makes of it against the sample: whether it fires, its fields,
// and the notification's payload in the vendor's format.
func (b builtin) check(t *testing.T, e *catalog.Entry, r *rules.Rule, s sample) {
	t.Helper()
	entityType := r.Spec.On.EntityTypes[0]
	env := b.event(t, entityType, s)
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	// The condition is evaluated whether or not the rule watches the
	// operation, so that an unwatched sample says what the condition
	// makes of it too.
	res, err := r.Evaluate(entityType, &rules.Input{Old: old, New: nw, Event: env})
	if err != nil {
		t.Errorf("%s: %v", s.name, err)
		return
	}
	if s.sparse {
		required := b.requiredFields(t, entityType, s)
		for _, img := range []map[string]any{s.old, s.new} {
			for k := range img {
				if !slices.Contains(required, k) {
					t.Errorf("%s: a sparse sample sets %s, which the %s schema does not require", s.name, k, entityType)
				}
			}
		}
		if s.deviceID != "" {
			t.Errorf("%s: a sparse sample sets deviceId", s.name)
		}
	}
	if s.excludes != "" && (s.fire || !slices.Contains(e.Exclusions, s.excludes)) {
		t.Errorf("%s: shows the exclusion %q, which %s does not list or which fires", s.name, s.excludes, e.Name)
	}
	watched := r.Watches(entityType, s.op)
	switch {
	case s.unwatched:
		if watched || s.fire {
			t.Errorf("%s: marked unwatched, but the rule watches %s or the sample fires", s.name, s.op)
		}
		if res.Fired != s.whenHolds {
			t.Errorf("%s: the condition gives %v on this unwatched event, want %v", s.name, res.Fired, s.whenHolds)
		}
		return
	case !watched:
		t.Errorf("%s: the rule does not watch %s; mark the sample unwatched and say what its condition gives", s.name, s.op)
		return
	case res.Fired != s.fire:
		t.Errorf("%s: fired = %v, want %v", s.name, res.Fired, s.fire)
		return
	case !s.fire:
		return
	}

	if len(e.Notification.Fields) > 0 && s.fields == nil {
		t.Errorf("%s: a firing sample of %s must list its fields", s.name, e.Name)
	}
	if got, want := jsonOf(t, orEmpty(res.Fields)), jsonOf(t, orEmpty(s.fields)); got != want {
		t.Errorf("%s: fields = %s, want %s", s.name, got, want)
	}
	n := notificationOf(t, r, env, res)
	switch e.Vendor {
	case catalog.Totogi:
		checkTotogi(t, s, env, n)
	case catalog.Truphone:
		checkTruphone(t, s, n)
	}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// notificationOf builds the notification a firing rule makes of an event,
// as the evaluator does: from the rule's notification as the event made
// it (its previous state and threshold computed).
func notificationOf(t *testing.T, r *rules.Rule, env map[string]any, res rules.Result) *notification.Notification {
	t.Helper()
	ref, tenant := notification.Ref(env)
	spec := r.Spec
	spec.Notification = res.Notification
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	n, err := notification.FromMatch(notification.Match{
		Tenant: tenant, Event: ref, Old: old, New: nw, RuleID: r.ID, Rule: spec, Fields: res.Fields, OrderingKey: res.OrderingKey,
	}, t0)
	if err != nil {
		t.Fatalf("notification: %v", err)
	}
	return n
}

// checkTotogi renders n in Totogi's structure and checks its account,
// device and notification information against the sample.
func checkTotogi(t *testing.T, s sample, env map[string]any, n *notification.Notification) {
	t.Helper()
	f, err := notification.NewFormat(notification.FormatTotogi, "", "")
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := f.Render(n)
	if err != nil {
		t.Errorf("%s: Totogi payload: %v", s.name, err)
		return
	}
	var p struct {
		EventData struct {
			AccountID *string        `json:"accountid"`
			DeviceID  *string        `json:"deviceid"`
			Info      map[string]any `json:"notificationInformation"`
		} `json:"eventdata"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%s: Totogi payload %s: %v", s.name, body, err)
	}
	want := map[string]any{"name": n.Name, "state": n.State}
	if s.prev != "" {
		want["prevstate"] = s.prev
	}
	if s.threshold != nil {
		want["threshold"] = *s.threshold
	}
	if len(s.fields) > 0 {
		want["notificationfields"] = s.fields
	}
	if got, w := jsonOf(t, p.EventData.Info), jsonOf(t, want); got != w {
		t.Errorf("%s: Totogi notificationInformation = %s, want %s", s.name, got, w)
	}
	if got, w := jsonOf(t, p.EventData.AccountID), jsonOf(t, env["accountId"]); got != w {
		t.Errorf("%s: Totogi accountid = %s, want the event's %s", s.name, got, w)
	}
	if got, w := jsonOf(t, p.EventData.DeviceID), jsonOf(t, env["deviceId"]); got != w {
		t.Errorf("%s: Totogi deviceid = %s, want the event's %s", s.name, got, w)
	}
}

// checkTruphone renders n in Truphone's structure and checks it whole
// against the sample, or that it cannot be made without the field the
// sample names.
func checkTruphone(t *testing.T, s sample, n *notification.Notification) {
	t.Helper()
	f, err := notification.NewFormat(notification.FormatTruphone, "", "")
	if err != nil {
		t.Fatal(err)
	}
	body, _, err := f.Render(n)
	if s.renderErr != "" {
		if err == nil || !strings.Contains(err.Error(), s.renderErr) {
			t.Errorf("%s: Truphone payload = %s, %v; want an error naming %s", s.name, body, err, s.renderErr)
		}
		return
	}
	if err != nil {
		t.Errorf("%s: Truphone payload: %v", s.name, err)
		return
	}
	want := map[string]any{"id": n.ID, "type": n.Name}
	maps.Copy(want, s.truphone)
	if s.threshold != nil {
		want["threshold"] = *s.threshold
	}
	if got, w := normalJSON(t, body), jsonOf(t, want); got != w {
		t.Errorf("%s: Truphone payload = %s, want %s", s.name, got, w)
	}
}

// normalJSON returns JSON text with its keys sorted.
func normalJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return jsonOf(t, v)
}

func (b builtin) run(t *testing.T, cases []entryCases) {
	t.Helper()
	c := catalog.New()
	for _, ec := range cases {
		t.Run(ec.entry+paramsSuffix(ec.params), func(t *testing.T) {
			e, _ := c.Lookup(ec.entry)
			r, _ := b.compile(t, ec.entry, ec.params)
			for _, s := range ec.cases {
				b.check(t, e, r, s)
			}
		})
	}
}

func paramsSuffix(params map[string]any) string {
	if len(params) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		parts = append(parts, k+"="+jsonOfAny(params[k]))
	}
	return "(" + strings.Join(parts, ",") + ")"
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonOfAny(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// with returns a copy of m with the key, value pairs kv set; a nil value
// removes the key.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func num(f float64) *float64 { return &f }

// t0 is a fixed instant samples are written around.
var t0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func allCases() []entryCases {
	return slices.Concat(totogiCases(), logiSenseCases(), truphoneCases(), m3terCases())
}

// TestEveryChangeEntryIsSampled holds the samples to what the entries
// promise: each entry fires on some and not on others, shows each of its
// exclusions, has a sample with its optional fields absent, one on the
// edge where a parameter sets a limit, and one of an operation it does
// not watch, whose condition is evaluated all the same.
func TestEveryChangeEntryIsSampled(t *testing.T) {
	type seen struct {
		fire, quiet, sparse, edge, unwatched int
		excludes                             map[string]bool
	}
	byEntry := map[string]*seen{}
	for _, ec := range allCases() {
		s := byEntry[ec.entry]
		if s == nil {
			s = &seen{excludes: map[string]bool{}}
			byEntry[ec.entry] = s
		}
		for _, c := range ec.cases {
			switch {
			case c.fire:
				s.fire++
			case !c.unwatched:
				s.quiet++
			}
			if c.sparse {
				s.sparse++
			}
			if c.edge {
				s.edge++
			}
			if c.unwatched {
				s.unwatched++
			}
			if c.excludes != "" {
				s.excludes[c.excludes] = true
			}
		}
	}
	for _, e := range catalog.New().Entries() {
		if e.Trigger != catalog.Change {
			continue
		}
		s := byEntry[e.Name]
		if s == nil {
			t.Errorf("%s has no samples", e.Name)
			continue
		}
		if s.fire == 0 || s.quiet == 0 {
			t.Errorf("%s: %d samples fire, %d watched ones do not; want both", e.Name, s.fire, s.quiet)
		}
		if s.sparse == 0 {
			t.Errorf("%s: no sample with the optional fields absent", e.Name)
		}
		limited := slices.ContainsFunc(e.Parameters, func(p catalog.Parameter) bool { return p.Type == catalog.Number })
		if limited && s.edge == 0 {
			t.Errorf("%s: no sample on the edge of its limit", e.Name)
		}
		if len(e.On.Operations) > 0 && len(e.On.Operations) < 3 && s.unwatched == 0 {
			t.Errorf("%s: no sample of an operation it does not watch", e.Name)
		}
		for _, x := range e.Exclusions {
			if !s.excludes[x] {
				t.Errorf("%s: no sample shows the exclusion %q", e.Name, x)
			}
		}
	}
}

// TestVendorNamesStatesAndTriggers pins every entry's notification name and
// state to the vendor's, and what triggers it.
func TestVendorNamesStatesAndTriggers(t *testing.T) {
	want := []struct{ vendor, name, state, trigger string }{
		{"Totogi", "PlanExpiryWarning", "warning", "scheduled"},
		{"Totogi", "PlanExpired", "expired", "change"},
		{"Totogi", "PlanCancelled", "cancelled", "change"},
		{"Totogi", "PlanRollover", "rolloverOccured", "change"},
		{"Totogi", "OutOfCredit", "outOfCredit", "change"},
		{"Totogi", "AccountCreditWarning", "warning", "change"},
		{"Totogi", "AutoRenewSuccess", "renewSuccess", "change"},
		{"Totogi", "AutoRenewFailure", "renewFailure", "change"},
		{"Totogi", "UnitAllowanceThreshold", "low", "change"},
		{"Totogi", "NewPlanActivated", "active", "change"},
		{"LogiSense", "ServiceStateTransition", "changed", "change"},
		{"LogiSense", "AccountStatusChange", "changed", "change"},
		{"LogiSense", "AccountCancellation", "cancelled", "change"},
		{"LogiSense", "BillRunStarted", "started", "change"},
		{"LogiSense", "BillRunCompleted", "completed", "change"},
		{"LogiSense", "InvoicePosted", "posted", "change"},
		{"LogiSense", "InvoiceOverdue", "overdue", "scheduled"},
		{"LogiSense", "InvoiceDelivery", "delivered", "change"},
		{"LogiSense", "InvoiceDeliveryPlusDays", "elapsed", "scheduled"},
		{"LogiSense", "Refund", "processed", "change"},
		{"LogiSense", "CreditProcessed", "processed", "change"},
		{"LogiSense", "ContractUnderCommit", "underCommit", "change"},
		{"LogiSense", "DormantSim", "dormant", "scheduled"},
		{"LogiSense", "PackageCancellation", "cancelled", "change"},
		{"LogiSense", "UsageThresholdExceeded", "exceeded", "change"},
		{"Truphone", "USAGE_THRESHOLD", "reached", "change"},
		{"Truphone", "SUBSCRIPTION_END", "ended", "change"},
		{"m3ter", "EntityCreated", "created", "change"},
		{"m3ter", "EntityUpdated", "updated", "change"},
		{"m3ter", "EntityDeleted", "deleted", "change"},
	}
	entries := catalog.New().Entries()
	if len(entries) != len(want) {
		t.Errorf("%d entries, want %d", len(entries), len(want))
	}
	for i, e := range entries[:min(len(entries), len(want))] {
		w := want[i]
		got := []string{e.Vendor, e.Name, e.Notification.Name, e.Notification.State, string(e.Trigger)}
		if exp := []string{w.vendor, w.name, w.name, w.state, w.trigger}; !slices.Equal(got, exp) {
			t.Errorf("entry %d: vendor, name, notification name, state, trigger = %q, want %q", i, got, exp)
		}
	}
}

// TestBuiltRulesCompileAgainstTheSchemas builds every change entry with
// parameters from its samples and checks the rule the admin API will save.
func TestBuiltRulesCompileAgainstTheSchemas(t *testing.T) {
	b := loadBuiltin(t)
	c := catalog.New()
	for _, ec := range allCases() {
		e, _ := c.Lookup(ec.entry)
		_, spec := b.compile(t, ec.entry, ec.params)
		if spec.Name != e.Name {
			t.Errorf("%s: rule named %q, want the entry's name", e.Name, spec.Name)
		}
		if got := slices.Sorted(maps.Keys(spec.Notification.Fields)); !slices.Equal(got, slices.Sorted(slices.Values(e.Notification.Fields))) {
			t.Errorf("%s: rule computes fields %v, the entry lists %v", e.Name, got, e.Notification.Fields)
		}
		if len(e.On.EntityTypes) > 0 && !slices.Equal(spec.On.EntityTypes, e.On.EntityTypes) {
			t.Errorf("%s: rule watches %v, the entry lists %v", e.Name, spec.On.EntityTypes, e.On.EntityTypes)
		}
		if !slices.Equal(spec.On.Operations, e.On.Operations) || len(spec.On.Operations) == 0 {
			t.Errorf("%s: rule watches operations %v, the entry lists %v", e.Name, spec.On.Operations, e.On.Operations)
		}
	}
}

// TestThresholdIsTheParameter pins the threshold of the entries whose
// threshold is a parameter; the credit entries' threshold depends on the
// account, and their samples check it.
func TestThresholdIsTheParameter(t *testing.T) {
	b := loadBuiltin(t)
	tests := []struct {
		entry  string
		params map[string]any
		want   float64
	}{
		{"UnitAllowanceThreshold", map[string]any{"thresholdPercent": 15}, 15},
		{"USAGE_THRESHOLD", nil, 80},
		{"USAGE_THRESHOLD", map[string]any{"thresholdPercent": 92.5}, 92.5},
	}
	for _, tt := range tests {
		_, spec := b.compile(t, tt.entry, tt.params)
		if th := spec.Notification.Threshold; th == nil || *th != tt.want {
			t.Errorf("%s%s: threshold %v, want %v", tt.entry, paramsSuffix(tt.params), th, tt.want)
		}
	}
}

// TestStateParametersAreValuesOfTheSchema shows that a parameter naming a
// value of a field is checked against the values the watched entity's
// schema lists for it, when it lists them.
func TestStateParametersAreValuesOfTheSchema(t *testing.T) {
	const enumService = `{"type": "record", "name": "Service", "namespace": "herald.events", "fields": [
		{"name": "old", "type": ["null", {"type": "record", "name": "Service", "namespace": "herald.entities", "fields": [
			{"name": "name", "type": "string"},
			{"name": "status", "type": {"type": "enum", "name": "ServiceStatus", "symbols": ["preactive", "active", "suspended"]}}]}],
		 "default": null},
		{"name": "new", "type": ["null", "herald.entities.Service"], "default": null}]}`
	s, err := avro.Parse(enumService)
	if err != nil {
		t.Fatal(err)
	}
	enum, err := rules.EntityFromSchemas("Service", []*avro.Schema{s})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := catalog.New().Lookup("ServiceStateTransition")
	if !e.NeedsSchema() {
		t.Fatal("ServiceStateTransition does not ask for the Service schema")
	}
	_, err = e.Rule(map[string]any{"fromState": "active", "toState": "Suspended"}, map[string]rules.Entity{"Service": enum})
	var pe *catalog.ParameterError
	if !errors.As(err, &pe) || pe.Parameter != "toState" || !strings.Contains(pe.Message, "one of preactive, active, suspended") {
		t.Errorf("an enum's value in the wrong case: %v, want a ParameterError on toState listing the symbols", err)
	}
	if _, err := e.Rule(map[string]any{"fromState": "active", "toState": "suspended"}, map[string]rules.Entity{"Service": enum}); err != nil {
		t.Errorf("the enum's own values: %v", err)
	}
	// The built-in Service types status as a free string: there is no list
	// to check against, and the rule matches the value whatever its case.
	if _, err := e.Rule(map[string]any{"fromState": "Active"}, loadBuiltin(t).entities); err != nil {
		t.Errorf("a free-string state: %v", err)
	}
}

func TestParametersAreCheckedAndNamed(t *testing.T) {
	tests := []struct {
		name      string
		entry     string
		params    map[string]any
		parameter string // the parameter the error names
		message   string // in the error
	}{
		{"a required parameter is missing", "UnitAllowanceThreshold", nil, "thresholdPercent", "required"},
		{"a percent of zero", "UnitAllowanceThreshold", map[string]any{"thresholdPercent": 0}, "thresholdPercent", "above 0"},
		{"a percent over 100", "USAGE_THRESHOLD", map[string]any{"thresholdPercent": 120}, "thresholdPercent", "at most 100"},
		{"a percent as a string", "USAGE_THRESHOLD", map[string]any{"thresholdPercent": "80"}, "thresholdPercent", "must be a number"},
		{"a percent as JSON text", "USAGE_THRESHOLD", map[string]any{"thresholdPercent": json.Number("1e999")}, "thresholdPercent", "finite"},
		{"a negative credit limit", "OutOfCredit", map[string]any{"creditLimit": -5}, "creditLimit", "at least 0"},
		{"an account limit above the provider's", "AccountCreditWarning",
			map[string]any{"accountCreditLimit": 60, "serviceProviderCreditLimit": json.Number("50")}, "accountCreditLimit", "(serviceProviderCreditLimit, 50)"},
		{"an unknown parameter", "USAGE_THRESHOLD", map[string]any{"threshold": 80}, "threshold", "takes thresholdPercent"},
		{"a parameter of an entry that takes none", "PlanExpired", map[string]any{"x": 1}, "x", "takes no parameters"},
		{"an integer with a fraction", "PlanExpiryWarning", map[string]any{"before": json.Number("2.5")}, "before", "whole number"},
		{"a boolean that is not one", "ContractUnderCommit", map[string]any{"perTier": "yes"}, "perTier", "true or false"},
		{"an integer below its minimum", "PlanExpiryWarning", map[string]any{"before": 0}, "before", "at least 1"},
		{"a value outside the enum", "PlanExpiryWarning", map[string]any{"before": 2, "unit": "weeks"}, "unit", "one of hours, days"},
		{"a time of day that is not one", "InvoiceDeliveryPlusDays", map[string]any{"days": 3, "at": "25:00"}, "at", "must match"},
		{"an entity type that is not a name", "EntityCreated", map[string]any{"entityType": "Commit ment"}, "entityType", "must match"},
		{"a calculation that is not a string", "EntityUpdated", map[string]any{"entityType": "Commitment", "calculation": true}, "calculation", "must be a string"},
	}
	c := catalog.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := c.Lookup(tt.entry)
			if !ok {
				t.Fatalf("no entry %s", tt.entry)
			}
			_, err := e.Resolve(tt.params)
			var pe *catalog.ParameterError
			if !errors.As(err, &pe) || pe.Parameter != tt.parameter || !strings.Contains(pe.Message, tt.message) {
				t.Fatalf("Resolve(%v) = %v, want a ParameterError on %s saying %q", tt.params, err, tt.parameter, tt.message)
			}
			if !strings.Contains(err.Error(), tt.parameter) {
				t.Errorf("error %q does not name the parameter", err)
			}
		})
	}
}

func TestDefaultsFillAndValidValuesPass(t *testing.T) {
	c := catalog.New()
	tests := []struct {
		entry  string
		params map[string]any
		want   catalog.Values
	}{
		{"USAGE_THRESHOLD", nil, catalog.Values{"thresholdPercent": 80.0}},
		{"USAGE_THRESHOLD", map[string]any{"thresholdPercent": json.Number("75.5")}, catalog.Values{"thresholdPercent": 75.5}},
		{"OutOfCredit", map[string]any{"creditLimit": nil}, catalog.Values{"creditLimit": 0.0}},
		{"AccountCreditWarning", map[string]any{"accountCreditLimit": 50, "serviceProviderCreditLimit": 50},
			catalog.Values{"accountCreditLimit": 50.0, "serviceProviderCreditLimit": 50.0}},
		// Accounts have their own service provider limit: the default one
		// does not refuse an account limit above it.
		{"AccountCreditWarning", map[string]any{"accountCreditLimit": 10},
			catalog.Values{"accountCreditLimit": 10.0, "serviceProviderCreditLimit": 0.0}},
		{"ContractUnderCommit", nil, catalog.Values{"perTier": false}},
		{"ContractUnderCommit", map[string]any{"perTier": true}, catalog.Values{"perTier": true}},
		{"PlanExpiryWarning", map[string]any{"before": json.Number("48"), "unit": "hours"}, catalog.Values{"before": int64(48), "unit": "hours"}},
		{"InvoiceDeliveryPlusDays", map[string]any{"days": 7.0}, catalog.Values{"days": int64(7), "at": "09:00"}},
		{"EntityDeleted", map[string]any{"entityType": "Account"}, catalog.Values{"entityType": "Account", "calculation": ""}},
		{"PlanExpired", map[string]any{}, catalog.Values{}},
	}
	for _, tt := range tests {
		e, _ := c.Lookup(tt.entry)
		got, err := e.Resolve(tt.params)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s.Resolve(%v) = %v, %v; want %v", tt.entry, tt.params, got, err, tt.want)
		}
	}
}

func TestEveryParameterIsDescribedAndItsDefaultPasses(t *testing.T) {
	for _, e := range catalog.New().Entries() {
		if e.Description == "" || e.Title == "" || e.Vendor == "" {
			t.Errorf("%s lacks a title, vendor or description", e.Name)
		}
		for _, p := range e.Parameters {
			if p.Description == "" {
				t.Errorf("%s.%s has no description", e.Name, p.Name)
			}
			if p.Pattern != "" {
				if _, err := regexp.Compile(p.Pattern); err != nil {
					t.Errorf("%s.%s: pattern: %v", e.Name, p.Name, err)
				}
			}
		}
		defaults := map[string]any{}
		for _, p := range e.Parameters {
			if !p.Required() {
				defaults[p.Name] = p.Default
			}
		}
		_, err := e.Resolve(defaults)
		var pe *catalog.ParameterError
		if err != nil && (!errors.As(err, &pe) || pe.Message != "required") {
			t.Errorf("%s: its defaults are refused: %v", e.Name, err)
		}
	}
}

// TestListingJSON pins the shape GET /v1/catalog lists an entry in.
func TestListingJSON(t *testing.T) {
	e, _ := catalog.New().Lookup("USAGE_THRESHOLD")
	var got map[string]any
	if err := json.Unmarshal([]byte(jsonOfAny(e)), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "USAGE_THRESHOLD", "title": "Usage Threshold", "vendor": "Truphone", "trigger": "change",
		"description": e.Description,
		"on":          map[string]any{"entityTypes": []any{"Balance"}, "operations": []any{"UPDATE"}},
		"notification": map[string]any{"name": "USAGE_THRESHOLD", "state": "reached",
			"fields": []any{"iccid", "subscription_id"}},
		"exclusions": []any{e.Exclusions[0], e.Exclusions[1]},
		"parameters": []any{map[string]any{
			"name": "thresholdPercent", "type": "number", "description": e.Parameters[0].Description,
			"required": false, "default": 80.0, "exclusiveMinimum": 0.0, "maximum": 100.0,
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listing\n%v\nwant\n%v", got, want)
	}
	pe, _ := catalog.New().Lookup("PlanExpired")
	if s := jsonOfAny(pe); !strings.Contains(s, `"parameters":[]`) {
		t.Errorf("an entry without parameters lists %s, want parameters []", s)
	}
	m, _ := catalog.New().Lookup("EntityCreated")
	if s := jsonOfAny(m.Parameters[0]); !strings.Contains(s, `"required":true,"default":null`) {
		t.Errorf("a required parameter lists as %s", s)
	}
}

func TestLookupIsExact(t *testing.T) {
	c := catalog.New()
	for _, name := range []string{"planexpired", "PlanExpired ", "usage_threshold", ""} {
		if _, ok := c.Lookup(name); ok {
			t.Errorf("Lookup(%q) found an entry", name)
		}
	}
	if e, ok := c.Lookup("SUBSCRIPTION_END"); !ok || e.Vendor != catalog.Truphone {
		t.Errorf("Lookup(SUBSCRIPTION_END) = %v, %v", e, ok)
	}
}
