package devstack_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/services/devstack"
)

// TestReadmeWalkthroughOnDevstack runs the README's curl walkthrough against
// the devstack, as `make run` starts it, on free ports.
func TestReadmeWalkthroughOnDevstack(t *testing.T) {
	ready := make(chan devstack.Stack, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- devstack.Run(ctx, devstack.Config{
			HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
			APIKey: "hk_walkthrough", Partitions: 3, LogLevel: "warn",
			Ready: func(s devstack.Stack) { ready <- s },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("devstack stopped with %v", err)
		}
	})
	var stack devstack.Stack
	select {
	case stack = <-ready:
	case err := <-done:
		done <- nil // for the cleanup, which waits for the devstack to stop
		t.Fatalf("devstack did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("devstack not ready after 30s")
	}
	if stack.APIKey != "hk_walkthrough" {
		t.Fatalf("demo key = %q, want the configured one", stack.APIKey)
	}
	walkthrough(t, "http://"+stack.HTTPAddr, stack.APIKey)
}

// TestEventReachesWebhookOnRealBroker drives one event from ingest through
// the events topic, the rule evaluator and the notifications topic to a
// webhook, with every service on the real Kafka broker.
func TestEventReachesWebhookOnRealBroker(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.Prefix(t)
	ownGroups(t, prefix)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	keys := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- devstack.RunServices(ctx, devstack.Services{
			Common: service.Config{
				Kafka:    kafka.Config{Brokers: brokers, TopicPrefix: prefix, Partitions: 3, ReplicationFactor: 1, CreateTopics: true},
				Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Second},
				Secrets:  configstore.KeyConfig{Key: base64.StdEncoding.EncodeToString(make([]byte, configstore.KeySize))},
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			},
			HTTP:  ln,
			Ready: func(key string) { keys <- key },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("services stopped with %v", err)
		}
	})
	select {
	case key := <-keys:
		walkthrough(t, "http://"+ln.Addr().String(), key)
	case err := <-done:
		done <- nil // for the cleanup, which waits for the services to stop
		t.Fatalf("services did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("services not ready after 60s")
	}
}

type delivery struct {
	header http.Header
	body   map[string]any
	// at is when the receiver got it.
	at time.Time
}

// walkthrough creates a webhook destination and a rule, posts events, and
// checks what the webhook receives, field by field; then a timed rule's
// notification, which comes when its timer is due.
func walkthrough(t *testing.T, api, key string) {
	t.Helper()
	deliveries := make(chan delivery, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("webhook body is not JSON: %v", err)
		}
		deliveries <- delivery{r.Header.Clone(), body, time.Now()}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	call := func(path, body string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("POST %s = %d %s, want %d", path, resp.StatusCode, raw, want)
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("POST %s: answer is not JSON: %s", path, raw)
		}
		return out
	}

	dest := call("/v1/destinations", `{"type":"webhook","name":"ops","webhook":{"url":"`+receiver.URL+`/hook"}}`, http.StatusCreated)
	destID, _ := dest["id"].(string)
	if destID == "" {
		t.Fatalf("destination has no id: %v", dest)
	}

	bad := call("/v1/rules", `{"name":"broken","on":{"entityTypes":["Balance"]},"when":"new.remaining <","notification":{"name":"X","state":"y"}}`, http.StatusBadRequest)
	if msg := problemText(bad); !strings.Contains(msg, "1:16") {
		t.Errorf("a rule that does not compile is refused with %q, want the error's position 1:16", msg)
	}

	rule := call("/v1/rules", `{"name":"low data","on":{"entityTypes":["Balance"],"operations":["UPDATE"]},`+
		`"when":"new.remaining < new.total * 0.2 && old.remaining >= old.total * 0.2",`+
		`"notification":{"name":"UnitAllowanceThreshold","state":"low"},"destinations":["`+destID+`"]}`, http.StatusCreated)
	ruleID, _ := rule["id"].(string)

	balance := func(used float64) string {
		b, _ := json.Marshal(map[string]any{"id": "bal-1", "accountId": "acct-1", "unit": "MB", "total": 1000, "used": used, "remaining": 1000 - used})
		return string(b)
	}
	event := func(oldUsed, newUsed float64) string {
		return `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","accountId":"acct-1","old":` + balance(oldUsed) + `,"new":` + balance(newUsed) + `}`
	}
	// Same account, so both land on one partition in this order: were the
	// first to fire, its notification would arrive first.
	call("/v1/events", event(500, 700), http.StatusAccepted)
	posted := call("/v1/events", event(700, 850), http.StatusAccepted)
	eventID, _ := posted["eventId"].(string)

	unknown := call("/v1/events", `{"entityType":"Nope","entityId":"x","operation":"CREATE","new":{}}`, http.StatusUnprocessableEntity)
	if !hasField(unknown, "entityType") {
		t.Errorf("unknown entity type: problem %v does not name entityType", unknown)
	}
	mistyped := call("/v1/events", strings.Replace(event(700, 850), `"total":1000,"unit"`, `"total":"lots","unit"`, 1), http.StatusBadRequest)
	if !hasField(mistyped, "old.total") {
		t.Errorf("mistyped field: problem %v does not name old.total", mistyped)
	}

	var got delivery
	select {
	case got = <-deliveries:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook delivery within 30s")
	}
	b := got.body
	ev, _ := b["event"].(map[string]any)
	old, _ := b["old"].(map[string]any)
	nw, _ := b["new"].(map[string]any)
	checkFields(t, "webhook", []field{
		{"id", b["id"], got.header.Get("webhook-id")},
		{"name", b["name"], "UnitAllowanceThreshold"},
		{"state", b["state"], "low"},
		{"tenantId", b["tenantId"], devstack.DemoTenant},
		{"ruleId", b["ruleId"], ruleID},
		{"event.id", ev["id"], eventID},
		{"event.entityType", ev["entityType"], "Balance"},
		{"event.entityId", ev["entityId"], "bal-1"},
		{"event.operation", ev["operation"], "UPDATE"},
		{"event.accountId", ev["accountId"], "acct-1"},
		{"old.remaining", old["remaining"], 300.0},
		{"new.remaining", nw["remaining"], 150.0},
		{"new.unit", nw["unit"], "MB"},
	})
	if id, _ := b["id"].(string); id == "" {
		t.Error("webhook body has no notification id")
	}
	if at, _ := ev["occurredAt"].(string); at == "" {
		t.Error("webhook event has no occurredAt")
	} else if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Errorf("event.occurredAt %q is not RFC 3339: %v", at, err)
	}
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	timedWalkthrough(t, call, destID, deliveries)
}

// timedWalkthrough is the README's timed rule: a warning 72 hours before a
// plan ends, for a plan that ends in 72 hours and 10 seconds, so that the
// warning reaches the webhook 10 seconds after the plan's event, not before,
// with the timer as its event.
func timedWalkthrough(t *testing.T, call func(path, body string, want int) map[string]any, destID string, deliveries <-chan delivery) {
	t.Helper()
	rule := call("/v1/rules", `{"name":"plan ending","on":{"entityTypes":["Plan"]},`+
		`"at":"new.expiresAt - duration(\"72h\")","when":"new.status == \"active\" && !new.autoRenew",`+
		`"notification":{"name":"PlanExpiryWarning","state":"warning"},"destinations":["`+destID+`"]}`, http.StatusCreated)
	ruleID, _ := rule["id"].(string)

	// As the README's date -u -d '+72 hours 10 seconds' +%Y-%m-%dT%H:%M:%SZ.
	ends := time.Now().UTC().Add(72*time.Hour + 10*time.Second).Format("2006-01-02T15:04:05Z")
	call("/v1/events", `{"entityType":"Plan","entityId":"plan-1","operation":"CREATE","accountId":"acct-1",`+
		`"new":{"id":"plan-1","accountId":"acct-1","name":"Monthly 10 GB","status":"active","expiresAt":"`+ends+`"}}`, http.StatusAccepted)
	end, _ := time.Parse(time.RFC3339, ends)
	due := end.Add(-72 * time.Hour)

	var got delivery
	select {
	case got = <-deliveries:
	case <-time.After(time.Until(due) + 30*time.Second):
		t.Fatalf("no warning within 30s of its due time %s", due.Format(time.RFC3339))
	}
	if got.at.Before(due) {
		t.Errorf("warning received at %s, before its due time %s", got.at.Format(time.RFC3339Nano), due.Format(time.RFC3339))
	}
	b := got.body
	ev, _ := b["event"].(map[string]any)
	nw, _ := b["new"].(map[string]any)
	checkFields(t, "warning", []field{
		{"id", b["id"], got.header.Get("webhook-id")},
		{"name", b["name"], "PlanExpiryWarning"},
		{"state", b["state"], "warning"},
		{"tenantId", b["tenantId"], devstack.DemoTenant},
		{"ruleId", b["ruleId"], ruleID},
		{"event.entityType", ev["entityType"], "Plan"},
		{"event.entityId", ev["entityId"], "plan-1"},
		{"event.operation", ev["operation"], "TIMER"},
		{"event.accountId", ev["accountId"], "acct-1"},
		{"old", b["old"], nil},
		{"new.id", nw["id"], "plan-1"},
		{"new.status", nw["status"], "active"},
	})
	if id, _ := ev["id"].(string); !strings.HasPrefix(id, "timer:Plan/plan-1@") {
		t.Errorf("warning event.id = %q, want the timer's", id)
	}
	if at, _ := ev["occurredAt"].(string); !sameInstant(at, due) {
		t.Errorf("warning event.occurredAt = %q, want the due time %s", at, due.Format(time.RFC3339))
	}
	if at, _ := nw["expiresAt"].(string); !sameInstant(at, end) {
		t.Errorf("warning new.expiresAt = %q, want the plan's end %s", at, ends)
	}
}

// sameInstant tells whether the RFC 3339 text s is the instant want.
func sameInstant(s string, want time.Time) bool {
	at, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && at.Equal(want)
}

// field is one field of a delivered body: its path, what it is and what
// it should be.
type field struct {
	name      string
	got, want any
}

// checkFields reports each field of what that is not as wanted.
func checkFields(t *testing.T, what string, fields []field) {
	t.Helper()
	for _, f := range fields {
		if !equalJSON(f.got, f.want) {
			t.Errorf("%s %s = %v, want %v", what, f.name, f.got, f.want)
		}
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func problemText(p map[string]any) string {
	b, _ := json.Marshal(p)
	return string(b)
}

func hasField(p map[string]any, field string) bool {
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		if m, _ := e.(map[string]any); m["field"] == field {
			return true
		}
	}
	return false
}

// ownGroups gives the services this test runs consumer groups and a
// transactional id of their own, through the variables an operator would
// set, so that tests sharing the real broker never join each other's
// groups.
func ownGroups(t *testing.T, prefix string) {
	for name, value := range map[string]string{
		"HERALD_EVALUATOR_GROUP":            prefix + "rule-evaluator",
		"HERALD_EVALUATOR_TRANSACTIONAL_ID": prefix + "rule-evaluator-0",
		"HERALD_WEBHOOK_GROUP":              prefix + "webhook-sender",
		"HERALD_EMAIL_GROUP":                prefix + "email-sender",
	} {
		t.Setenv(name, value)
	}
}
