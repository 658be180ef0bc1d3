package adminapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// catalogWait bounds every wait in the catalog tests.
const catalogWait = 15 * time.Second

// catalogAPI is an admin API running in-process on its own kfake cluster
// and fake registry, with tenant acme seeded: a key with every scope, a
// read-only key, and a webhook destination.
type catalogAPI struct {
	t           *testing.T
	url         string
	store       *configstore.Store
	key, reader string
	destination string
	registry    string // the fake schema registry's URL
}

func startCatalogAPI(t *testing.T) *catalogAPI {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), catalogWait)
	defer cancel()

	// Every setting at its default, as if no HERALD_* variable were set,
	// then pointed at the fakes.
	var cfg adminapi.Config
	if err := envconfig.Defaults(&cfg); err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	cfg.Config = servicetest.Fakes(t, 1)
	api, err := adminapi.New(ctx, cfg)
	if err != nil {
		t.Fatalf("adminapi.New: %v", err)
	}
	servicetest.Run(t, api)

	key, err := api.SeedTenant(ctx, "acme", "Acme", "hk_acme_admin")
	if err != nil {
		t.Fatalf("seed tenant: %v", err)
	}
	store := api.Store()
	put := func(kind, id string, spec any) {
		doc, err := configstore.NewDocument("acme", kind, id, spec)
		if err == nil {
			_, err = store.Put(ctx, doc, 0)
		}
		if err != nil {
			t.Fatalf("seed %s %s: %v", kind, id, err)
		}
	}
	const reader = "hk_acme_reader"
	hash := configstore.HashAPIKey(reader)
	put(configstore.KindAPIKey, "key_"+hash[:12], configstore.APIKey{Name: "reader", Hash: hash, Prefix: reader[:7], Scopes: []string{httpapi.ScopeConfigRead}})
	put(configstore.KindDestination, "dst_ops", configstore.Destination{Type: "webhook", Name: "ops",
		Webhook: &configstore.WebhookDestination{URL: "https://hooks.example.com/herald"}})

	mux := http.NewServeMux()
	api.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &catalogAPI{t: t, url: srv.URL, store: store, key: key, reader: reader, destination: "dst_ops", registry: cfg.Config.Registry.URL}
}

// catalogReply is an answer of the admin API: a problem, or a resource.
type catalogReply struct {
	status int
	header http.Header
	body   map[string]any
}

// fields returns the field paths a problem names.
func (r catalogReply) fields() []string {
	var out []string
	errs, _ := r.body["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		out = append(out, f)
	}
	return out
}

func (s *catalogAPI) do(method, path, key, body string) catalogReply {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	r := catalogReply{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&r.body); err != nil {
		s.t.Fatalf("%s %s: %d with an unreadable body: %v", method, path, resp.StatusCode, err)
	}
	return r
}

func TestCatalogListsEveryEntryWithItsParameters(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)
	r := s.do(http.MethodGet, "/v1/catalog", s.reader, "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/catalog: %d %v", r.status, r.body)
	}
	items, _ := r.body["items"].([]any)
	byName := map[string]map[string]any{}
	for _, it := range items {
		m, _ := it.(map[string]any)
		name, _ := m["name"].(string)
		byName[name] = m
	}
	if len(items) != 30 || len(byName) != 30 {
		t.Errorf("%d entries (%d names), want 30", len(items), len(byName))
	}
	for name, want := range map[string]string{
		"PlanExpired": "change", "PlanExpiryWarning": "scheduled", "DormantSim": "scheduled",
		"USAGE_THRESHOLD": "change", "EntityDeleted": "change",
	} {
		if got := byName[name]["trigger"]; got != want {
			t.Errorf("%s: trigger %v, want %s", name, got, want)
		}
	}
	params, _ := byName["USAGE_THRESHOLD"]["parameters"].([]any)
	if len(params) != 1 {
		t.Fatalf("USAGE_THRESHOLD parameters %v, want one", params)
	}
	p, _ := params[0].(map[string]any)
	if p["name"] != "thresholdPercent" || p["type"] != "number" || p["default"] != 80.0 || p["required"] != false || p["description"] == "" {
		t.Errorf("USAGE_THRESHOLD parameter %v, want thresholdPercent, a number defaulting to 80, described", p)
	}
}

func TestCatalogInstallCreatesTheRule(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)

	r := s.do(http.MethodPost, "/v1/catalog/USAGE_THRESHOLD:install", s.key,
		`{"parameters":{"thresholdPercent":90},"destinations":["`+s.destination+`"],"name":"sims at 90%"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("install: %d %v, want 201", r.status, r.body)
	}
	id, _ := r.body["id"].(string)
	if !strings.HasPrefix(id, "rul_") || r.header.Get("Location") != "/v1/rules/"+id {
		t.Errorf("install answered id %q at Location %q, want a rule id at /v1/rules/{id}", id, r.header.Get("Location"))
	}

	// The rule is stored as POST /v1/rules stores one, and reads back so.
	got := s.do(http.MethodGet, "/v1/rules/"+id, s.reader, "")
	if got.status != http.StatusOK {
		t.Fatalf("GET the installed rule: %d %v", got.status, got.body)
	}
	doc, ok := s.store.Get("acme", configstore.KindRule, id)
	if !ok {
		t.Fatalf("rule %s is not in the configuration", id)
	}
	spec := configstore.Spec[configstore.Rule](doc)
	if spec.Name != "sims at 90%" || spec.Notification.Name != "USAGE_THRESHOLD" || spec.Notification.State != "reached" ||
		spec.Notification.Threshold == nil || *spec.Notification.Threshold != 90 ||
		!strings.Contains(spec.When, ", 90)") || len(spec.Destinations) != 1 || spec.Destinations[0] != s.destination {
		t.Errorf("stored rule %+v, want USAGE_THRESHOLD/reached at 90%% to %s named as asked", spec, s.destination)
	}
	for _, k := range []string{"name", "when", "notification", "destinations", "on"} {
		if jsonText(t, got.body[k]) != jsonText(t, r.body[k]) {
			t.Errorf("%s: install answered %s, GET answers %s", k, jsonText(t, r.body[k]), jsonText(t, got.body[k]))
		}
	}

	// The installed rule fires on usage crossing 90%, as the evaluator
	// would run it.
	sample := func(oldUsed, newUsed int) string {
		img := func(used int) string {
			return `{"id":"bal-1","accountId":"acc-1","unit":"MB","kind":"allowance","total":1000,"used":` + strconv.Itoa(used) +
				`,"remaining":` + strconv.Itoa(1000-used) + `,"planId":"sub-1"}`
		}
		return `{"ruleId":"` + id + `","event":{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","deviceId":"8930001",` +
			`"old":` + img(oldUsed) + `,"new":` + img(newUsed) + `}}`
	}
	if fired := s.do(http.MethodPost, "/v1/rules:test", s.reader, sample(850, 950)); fired.body["fired"] != true {
		t.Errorf("85%% → 95%%: %v, want it to fire", fired.body)
	}
	if quiet := s.do(http.MethodPost, "/v1/rules:test", s.reader, sample(700, 850)); quiet.body["fired"] != false {
		t.Errorf("70%% → 85%%: %v, want it not to fire at 90%%", quiet.body)
	}

	// Without a name the rule takes the entry's.
	plain := s.do(http.MethodPost, "/v1/catalog/PlanExpired:install", s.key, `{}`)
	if plain.status != http.StatusCreated || plain.body["name"] != "PlanExpired" {
		t.Errorf("install without a name: %d %v, want 201 with the entry's name", plain.status, plain.body)
	}
}

func TestCatalogInstallRefusals(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)
	tests := []struct {
		name   string
		key    string
		path   string
		body   string
		status int
		field  string // the field path the problem names; "" for none
		detail string // in the problem's detail
	}{
		{"a percent over 100", s.key, "/v1/catalog/USAGE_THRESHOLD:install", `{"parameters":{"thresholdPercent":150}}`,
			400, "parameters.thresholdPercent", ""},
		{"a required parameter missing", s.key, "/v1/catalog/UnitAllowanceThreshold:install", `{"parameters":{}}`,
			400, "parameters.thresholdPercent", ""},
		{"a parameter the entry does not take", s.key, "/v1/catalog/PlanExpired:install", `{"parameters":{"days":3}}`,
			400, "parameters.days", ""},
		{"an account limit above the provider's", s.key, "/v1/catalog/AccountCreditWarning:install",
			`{"parameters":{"accountCreditLimit":80,"serviceProviderCreditLimit":50}}`, 400, "parameters.accountCreditLimit", ""},
		{"an entity type without a schema", s.key, "/v1/catalog/EntityCreated:install", `{"parameters":{"entityType":"Meter"}}`,
			400, "parameters.entityType", ""},
		{"a calculation naming a field no version has", s.key, "/v1/catalog/EntityUpdated:install",
			`{"parameters":{"entityType":"Commitment","calculation":"new.amountSpnet > 1"}}`, 400, "parameters.calculation", ""},
		{"an unknown destination", s.key, "/v1/catalog/PlanExpired:install", `{"destinations":["dst_nowhere"]}`,
			400, "destinations[0]", ""},
		{"an unknown field in the body", s.key, "/v1/catalog/PlanExpired:install", `{"params":{}}`, 400, "params", ""},
		{"a time of day that is not one", s.key, "/v1/catalog/InvoiceDeliveryPlusDays:install", `{"parameters":{"days":2,"at":"9am"}}`,
			400, "parameters.at", ""},
		{"an unknown entry", s.key, "/v1/catalog/PlanExploded:install", `{}`, 404, "", "no catalog entry"},
		{"an entry without :install", s.key, "/v1/catalog/PlanExpired", `{}`, 404, "", "no catalog entry"},
		{"a key without config:write", s.reader, "/v1/catalog/PlanExpired:install", `{}`, 403, "", "config:write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(http.MethodPost, tt.path, tt.key, tt.body)
			if r.status != tt.status {
				t.Fatalf("%d %v, want %d", r.status, r.body, tt.status)
			}
			if f := r.fields(); tt.field != "" && (len(f) != 1 || f[0] != tt.field) {
				t.Errorf("problem names %v, want %s", f, tt.field)
			}
			if d, _ := r.body["detail"].(string); !strings.Contains(d, tt.detail) {
				t.Errorf("detail %q, want it to say %q", d, tt.detail)
			}
		})
	}
	if n := len(s.store.List("acme", configstore.KindRule)); n != 0 {
		t.Errorf("refused installs stored %d rules", n)
	}
}

// TestCatalogInstallsWhatTheVendorsSay installs the entries whose install
// the vendors' words decide, and runs each installed rule on an event as
// the evaluator would.
func TestCatalogInstallsWhatTheVendorsSay(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)
	install := func(entry, params string) string {
		t.Helper()
		r := s.do(http.MethodPost, "/v1/catalog/"+entry+":install", s.key, `{"parameters":`+params+`}`)
		if r.status != http.StatusCreated {
			t.Fatalf("install %s %s: %d %v, want 201", entry, params, r.status, r.body)
		}
		id, _ := r.body["id"].(string)
		return id
	}
	fires := func(id, event string) bool {
		t.Helper()
		r := s.do(http.MethodPost, "/v1/rules:test", s.reader, `{"ruleId":"`+id+`","event":`+event+`}`)
		if r.status != http.StatusOK {
			t.Fatalf("rules:test: %d %v", r.status, r.body)
		}
		return r.body["fired"] == true
	}

	// Totogi: the account limit cannot be set higher than the service
	// provider's; an account without one has Totogi's default, 0, but the
	// install is not refused for it, as accounts bring their own.
	credit := install("AccountCreditWarning", `{"accountCreditLimit":20}`)
	account := func(balance int, creditLimit string) string {
		return `{"id":"acc-1","status":"active","balance":` + strconv.Itoa(balance) + `,"creditLimit":` + creditLimit + `}`
	}
	update := func(entityType, old, new string) string {
		return `{"entityType":"` + entityType + `","entityId":"e-1","operation":"UPDATE","old":` + old + `,"new":` + new + `}`
	}
	if !fires(credit, update("Account", account(0, "50"), account(-20, "50"))) {
		t.Error("AccountCreditWarning: an account with a creditLimit of 50 reaching -20 did not fire")
	}
	if fires(credit, update("Account", account(0, "50"), account(-10, "50"))) {
		t.Error("AccountCreditWarning: an account with a creditLimit of 50 reaching -10 fired")
	}

	// LogiSense writes its states capitalised; Service's status is a free
	// string, matched whatever its case.
	transition := install("ServiceStateTransition", `{"fromState":"Active","toState":"Suspended"}`)
	service := func(status string) string {
		return `{"id":"svc-1","accountId":"acc-1","name":"Fibre 1G","status":"` + status + `"}`
	}
	if !fires(transition, update("Service", service("active"), service("suspended"))) {
		t.Error("ServiceStateTransition Active → Suspended did not fire on active → suspended")
	}

}

// TestScheduledEntriesInstallAsTimedRules installs the entries that fire
// at a time: each is stored as a rule with at, timed as the parameters say.
func TestScheduledEntriesInstallAsTimedRules(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)
	tests := []struct {
		entry, params string
		at, timerFor  string // in the stored rule
	}{
		{"PlanExpiryWarning", `{"before":3}`, `new.expiresAt - duration("72h")`, ""},
		{"PlanExpiryWarning", `{"before":36,"unit":"hours"}`, `new.expiresAt - duration("36h")`, ""},
		{"InvoiceOverdue", `{"graceDays":5}`, `new.dueDate + duration("120h")`, ""},
		{"InvoiceDeliveryPlusDays", `{"days":2,"at":"09:00"}`, `dayAt(new.deliveredAt, 2, "09:00", tenant.timeZone)`, ""},
		{"DormantSim", `{"days":30}`, `activityAt(old, new, event) + duration("720h")`, "event.deviceId"},
	}
	for _, tt := range tests {
		t.Run(tt.entry+tt.params, func(t *testing.T) {
			r := s.do(http.MethodPost, "/v1/catalog/"+tt.entry+":install", s.key, `{"parameters":`+tt.params+`}`)
			if r.status != http.StatusCreated {
				t.Fatalf("install: %d %v, want 201", r.status, r.body)
			}
			at, _ := r.body["at"].(string)
			timerFor, _ := r.body["timerFor"].(string)
			if !strings.Contains(at, tt.at) || timerFor != tt.timerFor {
				t.Errorf("rule at %q, timerFor %q; want at containing %q, timerFor %q", at, timerFor, tt.at, tt.timerFor)
			}
		})
	}
}

// TestCatalogChecksStatesAgainstTheSchemasValues registers a Service
// schema whose status is an enum, as a deployment's registry may hold:
// a state parameter that is not one of its symbols is refused, naming the
// parameter.
func TestCatalogChecksStatesAgainstTheSchemasValues(t *testing.T) {
	t.Parallel()
	s := startCatalogAPI(t)
	subject := s.eventSubject("Service")
	registry := func(method, path, body string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, s.registry+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("registry %s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return string(b)
	}
	var latest struct {
		Schema string `json:"schema"`
	}
	var service map[string]any
	if err := json.Unmarshal([]byte(registry(http.MethodGet, "/subjects/"+subject+"/versions/latest", "")), &latest); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(latest.Schema), &service); err != nil {
		t.Fatal(err)
	}
	// The status field of the entity record, declared in the old image.
	var status map[string]any
	for _, f := range service["fields"].([]any) {
		if f := f.(map[string]any); f["name"] == "old" {
			for _, img := range f["type"].([]any)[1].(map[string]any)["fields"].([]any) {
				if img := img.(map[string]any); img["name"] == "status" {
					status = img
				}
			}
		}
	}
	if status == nil {
		t.Fatal("no status field in the Service schema")
	}
	status["type"] = map[string]any{"type": "enum", "name": "ServiceState", "symbols": []string{"preactive", "active", "suspended", "cancelled"}}
	enumService, _ := json.Marshal(service)
	schema, _ := json.Marshal(map[string]string{"schema": string(enumService)})
	registry(http.MethodPut, "/config/"+subject, `{"compatibility":"NONE"}`)
	registry(http.MethodPost, "/subjects/"+subject+"/versions", string(schema))

	r := s.do(http.MethodPost, "/v1/catalog/ServiceStateTransition:install", s.key, `{"parameters":{"fromState":"Active"}}`)
	if f := r.fields(); r.status != http.StatusBadRequest || len(f) != 1 || f[0] != "parameters.fromState" ||
		!strings.Contains(jsonText(t, r.body), "one of preactive, active, suspended, cancelled") {
		t.Errorf("fromState Active against an enum of lower-case states: %d %v, want 400 on parameters.fromState listing them", r.status, r.body)
	}
	if r := s.do(http.MethodPost, "/v1/catalog/ServiceStateTransition:install", s.key, `{"parameters":{"fromState":"active"}}`); r.status != http.StatusCreated {
		t.Errorf("fromState active: %d %v, want 201", r.status, r.body)
	}
}

// eventSubject returns the registry subject of an entity type's events.
func (s *catalogAPI) eventSubject(entityType string) string {
	s.t.Helper()
	r := s.do(http.MethodGet, "/v1/event-types?limit=100", s.reader, "")
	items, _ := r.body["items"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		if m["entityType"] == entityType {
			subject, _ := m["subject"].(string)
			return subject
		}
	}
	s.t.Fatalf("no event type %s in %v", entityType, r.body)
	return ""
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
