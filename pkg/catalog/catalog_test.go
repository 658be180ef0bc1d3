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
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/schemas"
)

// sample is one entity-change event and whether the entry fires on it.
type sample struct {
	name     string
	op       string // CREATE, UPDATE or DELETE
	old, new map[string]any
	at       time.Time // occurredAt; zero for now
	deviceID string    // the envelope's deviceId; empty for null
	writer   int       // the schema version that writes the event; 0 for the latest
	fire     bool
	// fields are the notification fields a firing sample must carry, as
	// JSON; nil to leave them unchecked.
	fields map[string]any
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
	spec, err := e.Rule(params)
	if err != nil {
		t.Fatalf("%s.Rule(%v): %v", entry, params, err)
	}
	r, err := rules.NewCompiler(rules.DefaultLimits).Compile("acme", "rul_"+entry, spec, b.entities)
	if err != nil {
		t.Fatalf("%s: compile %q: %v", entry, spec.When, err)
	}
	return r, spec
}

// event encodes a sample as a producer would, with its entity type's
// schema, and decodes it back: the rule sees what it would see in Kafka.
func (b builtin) event(t *testing.T, entityType string, s sample) map[string]any {
	t.Helper()
	versions := b.versions[entityType]
	if len(versions) == 0 {
		t.Fatalf("no schema for entity type %s", entityType)
	}
	schema := versions[len(versions)-1]
	if s.writer > 0 {
		schema = versions[s.writer-1]
	}
	at := s.at
	if at.IsZero() {
		at = time.Now()
	}
	var device any
	if s.deviceID != "" {
		device = s.deviceID
	}
	envelope := map[string]any{
		"eventId": "01JTESTEVENT", "tenantId": "acme", "entityType": entityType, "entityId": "e-1",
		"operation": s.op, "occurredAt": at, "accountId": "acc-1", "deviceId": device, "correlationId": nil,
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

// fire evaluates the rule on a sample as the evaluator does: only if the
// rule watches the event's entity type and operation.
func (b builtin) fire(t *testing.T, r *rules.Rule, s sample) rules.Result {
	t.Helper()
	entityType := r.Spec.On.EntityTypes[0]
	env := b.event(t, entityType, s)
	if !r.Watches(entityType, s.op) {
		return rules.Result{}
	}
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	res, err := r.Evaluate(entityType, &rules.Input{Old: old, New: nw, Event: env})
	if err != nil {
		t.Fatalf("sample %q: %v", s.name, err)
	}
	return res
}

func (b builtin) run(t *testing.T, cases []entryCases) {
	t.Helper()
	for _, ec := range cases {
		t.Run(ec.entry+paramsSuffix(ec.params), func(t *testing.T) {
			r, _ := b.compile(t, ec.entry, ec.params)
			for _, s := range ec.cases {
				res := b.fire(t, r, s)
				if res.Fired != s.fire {
					t.Errorf("%s: fired = %v, want %v", s.name, res.Fired, s.fire)
					continue
				}
				if s.fire && s.fields != nil && jsonOf(t, res.Fields) != jsonOf(t, s.fields) {
					t.Errorf("%s: fields = %s, want %s", s.name, jsonOf(t, res.Fields), jsonOf(t, s.fields))
				}
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

// with returns a copy of m with the key, value pairs kv set.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// t0 is a fixed instant samples are written around.
var t0 = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

func allCases() []entryCases {
	return slices.Concat(totogiCases(), logiSenseCases(), truphoneCases(), m3terCases())
}

func TestEveryChangeEntryHasSamplesThatFireAndSamplesThatDoNot(t *testing.T) {
	tested := map[string]bool{}
	for _, ec := range allCases() {
		var fire, quiet int
		for _, s := range ec.cases {
			if s.fire {
				fire++
			} else {
				quiet++
			}
		}
		if fire == 0 || quiet == 0 {
			t.Errorf("%s%s: %d samples fire, %d do not; want both", ec.entry, paramsSuffix(ec.params), fire, quiet)
		}
		tested[ec.entry] = true
	}
	for _, e := range catalog.New().Entries() {
		if e.Trigger == catalog.Change && !tested[e.Name] {
			t.Errorf("%s has no samples", e.Name)
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

func TestScheduledEntriesRefuseToInstall(t *testing.T) {
	c := catalog.New()
	var scheduled []string
	for _, e := range c.Entries() {
		if e.Trigger != catalog.Scheduled {
			continue
		}
		scheduled = append(scheduled, e.Name)
		if _, err := e.Rule(nil); !errors.Is(err, catalog.ErrScheduled) {
			t.Errorf("%s.Rule = %v, want ErrScheduled", e.Name, err)
		}
	}
	if want := []string{"PlanExpiryWarning", "InvoiceOverdue", "InvoiceDeliveryPlusDays", "DormantSim"}; !slices.Equal(scheduled, want) {
		t.Errorf("scheduled entries %v, want %v", scheduled, want)
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
		{"OutOfCredit", nil, 0},
		{"OutOfCredit", map[string]any{"creditLimit": 50}, -50},
		{"AccountCreditWarning", map[string]any{"accountCreditLimit": 20, "serviceProviderCreditLimit": 50}, -20},
	}
	for _, tt := range tests {
		_, spec := b.compile(t, tt.entry, tt.params)
		if th := spec.Notification.Threshold; th == nil || *th != tt.want {
			t.Errorf("%s%s: threshold %v, want %v", tt.entry, paramsSuffix(tt.params), th, tt.want)
		}
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
		{"an account limit above the provider's default", "AccountCreditWarning", map[string]any{"accountCreditLimit": 10}, "accountCreditLimit", "service provider credit limit"},
		{"an account limit above the provider's", "AccountCreditWarning",
			map[string]any{"accountCreditLimit": 60, "serviceProviderCreditLimit": json.Number("50")}, "accountCreditLimit", "(serviceProviderCreditLimit, 50)"},
		{"an unknown parameter", "USAGE_THRESHOLD", map[string]any{"threshold": 80}, "threshold", "takes thresholdPercent"},
		{"a parameter of an entry that takes none", "PlanExpired", map[string]any{"x": 1}, "x", "takes no parameters"},
		{"an integer with a fraction", "DormantSim", map[string]any{"days": json.Number("2.5")}, "days", "whole number"},
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
		{"PlanExpiryWarning", map[string]any{"before": json.Number("48"), "unit": "hours"}, catalog.Values{"before": int64(48), "unit": "hours"}},
		{"DormantSim", nil, catalog.Values{"days": int64(30)}},
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
