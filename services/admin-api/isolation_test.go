package adminapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// bravo is what tenant bravo owns in the isolation test. Everything of
// bravo's that the API could show carries the word "bravo".
type bravo struct {
	key          string // bravo's own API key
	destination  string
	rule         string
	apiKey       string // the id of a second key
	notification string // with an attempt and a dead letter
	secret       string // the destination's signing secret
	subSecret    string // the subscription signing secret
	// byKind is an id of bravo's for every kind the API serves.
	byKind map[string]string
}

// isoRequest is one request of tenant alpha that names bravo's things,
// and the status it must get; 0 accepts any status below 500.
type isoRequest struct {
	path, body string
	want       int
	check      func(t *testing.T, r reply)
}

// isolationCases are the requests for the routes that the kind machinery
// does not make, by pattern. A route the table gains without a case here
// fails TestTenantsNeverReachEachOther until one is added.
func isolationCases(b bravo) map[string][]isoRequest {
	noneReplayed := func(t *testing.T, r reply) {
		if n, _ := r.body["replayed"].(float64); n != 0 {
			t.Errorf("alpha replayed %v dead letters", r.body["replayed"])
		}
	}
	ownSettings := func(t *testing.T, r reply) {
		if id, _ := r.body["id"].(string); id == "bravo" || id == "" {
			t.Errorf("alpha's settings are %s's", r.raw)
		}
	}
	return map[string][]isoRequest{
		"GET /v1/settings":        {{"/v1/settings", "", http.StatusOK, ownSettings}},
		"PATCH /v1/settings":      {{"/v1/settings", `{"timeZone":"Asia/Tokyo"}`, http.StatusOK, ownSettings}},
		"POST /v1/rules:validate": {{"/v1/rules:validate", ruleBody("r", b.destination), http.StatusBadRequest, nil}},
		"POST /v1/rules:test": {{"/v1/rules:test", `{"ruleId":"` + b.rule + `","event":{"entityType":"Balance","entityId":"b","operation":"UPDATE"}}`,
			http.StatusBadRequest, nil}},
		"GET /v1/event-types":               {{"/v1/event-types", "", http.StatusOK, nil}},
		"GET /v1/event-types/{type}/fields": {{"/v1/event-types/Balance/fields", "", http.StatusOK, nil}},
		"GET /v1/catalog":                   {{"/v1/catalog", "", http.StatusOK, nil}},
		"POST /v1/catalog/{action}": {{"/v1/catalog/USAGE_THRESHOLD:install", `{"destinations":["` + b.destination + `"]}`,
			http.StatusBadRequest, nil}},
		"POST /v1/destinations/{action}": {
			{"/v1/destinations/" + b.destination + ":rotate-secret", "", http.StatusNotFound, nil},
			{"/v1/destinations/" + b.destination + ":enable", "", http.StatusNotFound, nil},
		},
		"GET /v1/destinations/{id}/secret":    {{"/v1/destinations/" + b.destination + "/secret", "", http.StatusNotFound, nil}},
		"GET /v1/notifications/{id}/attempts": {{"/v1/notifications/" + b.notification + "/attempts", "", http.StatusNotFound, nil}},
		"POST /v1/notifications/{action}": {
			{"/v1/notifications/" + b.notification + ":redeliver", "", http.StatusNotFound, nil},
			{"/v1/notifications/" + b.notification + ":redeliver", `{"destinations":["` + b.destination + `"]}`, http.StatusNotFound, nil},
		},
		"GET /v1/dlq": {
			{"/v1/dlq", "", http.StatusOK, nil},
			{"/v1/dlq?destination=" + b.destination, "", http.StatusOK, nil},
		},
		"PUT /v1/accounts/{accountId}/contacts/{type}":    {{"/v1/accounts/acct-bravo/contacts/billing", `{}`, http.StatusBadRequest, nil}},
		"GET /v1/accounts/{accountId}/contacts/{type}":    {{"/v1/accounts/acct-bravo/contacts/billing", "", http.StatusNotFound, nil}},
		"DELETE /v1/accounts/{accountId}/contacts/{type}": {{"/v1/accounts/acct-bravo/contacts/billing", "", http.StatusNotFound, nil}},
		"GET /v1/accounts/{accountId}/contacts":           {{"/v1/accounts/acct-bravo/contacts", "", http.StatusOK, nil}},
		"PUT /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}": {
			{"/v1/resources/Sim/sim-bravo/subscriptions/USAGE_THRESHOLD", `{}`, http.StatusBadRequest, nil}},
		"GET /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}": {
			{"/v1/resources/Sim/sim-bravo/subscriptions/USAGE_THRESHOLD", "", http.StatusNotFound, nil}},
		"DELETE /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}": {
			{"/v1/resources/Sim/sim-bravo/subscriptions/USAGE_THRESHOLD", "", http.StatusNotFound, nil}},
		"GET /v1/resources/{resourceType}/{resourceId}/subscriptions": {{"/v1/resources/Sim/sim-bravo/subscriptions", "", http.StatusOK, nil}},
		"GET /v1/subscription-settings":                               {{"/v1/subscription-settings", "", http.StatusNotFound, nil}},
		"POST /v1/subscription-settings:rotate-secret":                {{"/v1/subscription-settings:rotate-secret", "", http.StatusNotFound, nil}},
		"POST /v1/dlq:replay": {
			{"/v1/dlq:replay", `{}`, http.StatusAccepted, noneReplayed},
			{"/v1/dlq:replay", `{"destination":"` + b.destination + `"}`, http.StatusBadRequest, nil},
		},
	}
}

// kindRequests are the requests for a route the kind machinery made: an
// id in the path is bravo's and answers 404; a list answers 200; a
// creation may succeed, for alpha.
func kindRequests(rt adminapi.Route, b bravo) []isoRequest {
	method, path, _ := strings.Cut(rt.Pattern, " ")
	switch {
	case strings.Contains(path, "{id}"):
		return []isoRequest{{strings.Replace(path, "{id}", b.byKind[rt.Kind], 1), `{}`, http.StatusNotFound, nil}}
	case method == http.MethodGet:
		return []isoRequest{{path, "", http.StatusOK, nil}}
	}
	body := `{}`
	switch rt.Kind {
	case configstore.KindRule:
		body = ruleBody("r", b.destination)
	case configstore.KindAPIKey:
		body = `{"name":"k","scopes":["config:read"]}`
	}
	return []isoRequest{{path, body, 0, nil}}
}

// TestTenantsNeverReachEachOther proves, for every route of the admin
// API's route table, that tenant alpha's key used on tenant bravo's ids
// answers 404, that alpha's lists never show bravo's items, and that no
// request of alpha's changes or shows anything of bravo's. Operator routes
// refuse alpha's key.
func TestTenantsNeverReachEachOther(t *testing.T) {
	s := startAdmin(t)
	alpha := s.tenant("alpha")
	s.rule(alpha, "alpha-rule", s.destination(alpha, "alpha-dest"))

	b := bravo{key: s.tenant("bravo"), notification: "ntf-of-bravo"}
	dest := s.want(http.StatusCreated, "POST", "/v1/destinations", b.key,
		`{"type":"webhook","name":"bravo-dest","webhook":{"url":"https://hooks.example.com/bravo"}}`)
	b.destination, b.secret = dest.str("id"), dest.str("secret")
	b.rule = s.rule(b.key, "bravo-rule", b.destination)
	b.apiKey = s.want(http.StatusCreated, "POST", "/v1/api-keys", b.key, `{"name":"bravo-key","scopes":["config:read"]}`).str("id")
	b.byKind = map[string]string{
		configstore.KindDestination: b.destination, configstore.KindRule: b.rule, configstore.KindAPIKey: b.apiKey,
	}
	routes := s.api.RouteTable()
	for _, rt := range routes {
		// A kind the API gained since this test was written: bravo gets
		// one of it, stored as is.
		if rt.Kind != "" && rt.Auth != adminapi.AuthOperator && b.byKind[rt.Kind] == "" {
			doc, err := configstore.NewDocument("bravo", rt.Kind, "bravo-"+rt.Kind, map[string]string{"name": "bravo"})
			if err == nil {
				_, err = s.store.Put(t.Context(), doc, 0)
			}
			if err != nil {
				t.Fatalf("store bravo's %s: %v", rt.Kind, err)
			}
			b.byKind[rt.Kind] = doc.ID
		}
	}
	// bravo's contact and subscription, which live outside the kind routes.
	s.want(http.StatusCreated, "PUT", "/v1/accounts/acct-bravo/contacts/billing", b.key, `{"name":"Bravo","email":"bravo@example.com"}`)
	b.subSecret = s.want(http.StatusCreated, "PUT", "/v1/resources/Sim/sim-bravo/subscriptions/USAGE_THRESHOLD", b.key,
		`{"webhookUrl":"https://hooks.example.com/bravo"}`).str("secret")
	s.bravoDeliveries(b)
	before := versions(s.store.ListTenant("bravo"))
	forbidden := []string{"bravo", b.secret, b.subSecret, b.key}

	cases := isolationCases(b)
	for _, rt := range routes {
		t.Run(rt.Pattern, func(t *testing.T) {
			method, path, _ := strings.Cut(rt.Pattern, " ")
			var reqs []isoRequest
			switch {
			case rt.Auth == "":
				t.Fatal("the route has no access check: register it through a guard (read, write or operatorOnly)")
			case rt.Auth == adminapi.AuthOperator:
				path = strings.NewReplacer("{id}", "bravo", "{keyId}", b.apiKey).Replace(path)
				reqs = []isoRequest{{path, `{"name":"x"}`, http.StatusUnauthorized, nil}}
			case cases[rt.Pattern] != nil:
				reqs = cases[rt.Pattern]
			case rt.Kind != "":
				reqs = kindRequests(rt, b)
			default:
				t.Fatalf("no isolation case for %s: add the requests of tenant alpha that name tenant bravo's things to isolationCases", rt.Pattern)
			}
			for _, rq := range reqs {
				r := s.do(method, rq.path, alpha, rq.body)
				if rq.want != 0 && r.status != rq.want || r.status >= 500 {
					t.Errorf("%s %s by alpha = %d %s, want %d", method, rq.path, r.status, r.raw, rq.want)
				}
				for _, f := range forbidden {
					if f != "" && strings.Contains(r.raw, f) {
						t.Errorf("%s %s by alpha shows bravo's %q: %s", method, rq.path, f, r.raw)
					}
				}
				if rq.check != nil {
					rq.check(t, r)
				}
			}
			if after := versions(s.store.ListTenant("bravo")); !equalVersions(before, after) {
				t.Errorf("bravo's documents changed: %v, then %v", before, after)
			}
		})
	}

	// bravo still has all it had.
	for _, path := range []string{"/v1/destinations/" + b.destination, "/v1/rules/" + b.rule, "/v1/api-keys/" + b.apiKey,
		"/v1/notifications/" + b.notification + "/attempts", "/v1/accounts/acct-bravo/contacts/billing",
		"/v1/resources/Sim/sim-bravo/subscriptions/USAGE_THRESHOLD"} {
		s.want(http.StatusOK, "GET", path, b.key, "")
	}
	for _, d := range s.want(http.StatusOK, "GET", "/v1/dlq", b.key, "").items() {
		if d["replayedAt"] != nil {
			t.Errorf("bravo's dead letter was replayed: %v", d)
		}
	}
}

func versions(docs []configstore.Document) map[string]int64 {
	out := map[string]int64{}
	for _, d := range docs {
		out[d.Key()] = d.Version
	}
	return out
}

func equalVersions(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// bravoDeliveries gives bravo's notification a failed attempt and a dead
// letter, and waits until bravo sees both.
func (s *adminStack) bravoDeliveries(b bravo) {
	t := s.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), adminWait)
	defer cancel()
	base, topics := s.api.Base(), s.cfg.Kafka.Topics()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.cfg.Kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	failure := "bravo's endpoint refused"
	attempt := delivery.Attempt{
		NotificationID: b.notification, TenantID: "bravo", DestinationID: b.destination, Channel: "webhook",
		Attempt: 1, StartedAt: now, Outcome: delivery.OutcomePermanent, Error: &failure, DeadLettered: true,
		OriginTopic: topics.Notifications,
	}
	n := notification.Notification{
		ID: b.notification, TenantID: "bravo", RuleID: b.rule, Name: "bravo-notice", State: "low",
		OrderingKey: "acct-bravo", Destinations: []string{b.destination}, CreatedAt: now,
		Event: notification.EventRef{ID: "evt-bravo", EntityType: "Balance", EntityID: "bal-bravo", Operation: "UPDATE", OccurredAt: now},
	}
	as, err := base.Registry.Latest(ctx, base.DeliveryAttemptSubject())
	if err != nil {
		t.Fatal(err)
	}
	ns, err := base.Registry.Latest(ctx, base.NotificationSubject())
	if err != nil {
		t.Fatal(err)
	}
	av, err := as.Encode(&attempt)
	if err != nil {
		t.Fatal(err)
	}
	nv, err := ns.Encode(&n)
	if err != nil {
		t.Fatal(err)
	}
	entry := delivery.Entry{Destination: b.destination, Attempts: 1, ErrorClass: "permanent", Error: failure,
		Origin: delivery.Origin{Topic: topics.Notifications}}
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: topics.Deliveries, Key: []byte(b.notification), Value: av},
		&kgo.Record{Topic: topics.DLQ("webhook"), Key: []byte("bravo/acct-bravo"), Value: nv, Headers: entry.Headers()},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		attempts := s.do("GET", "/v1/notifications/"+b.notification+"/attempts", b.key, "")
		dead := s.do("GET", "/v1/dlq", b.key, "")
		if attempts.status == http.StatusOK && len(dead.items()) == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bravo's attempt and dead letter not in the delivery log: %s; %s", attempts.raw, dead.raw)
		case <-tick.C:
		}
	}
}
