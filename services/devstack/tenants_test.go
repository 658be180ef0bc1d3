package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	havro "github.com/heraldhq/herald/pkg/avro"
	engine "github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/devstack"
)

// seconds bounds how long a change may take to reach every service.
const seconds = 5 * time.Second

// startDevstack runs the devstack on free ports until the test ends.
func startDevstack(t *testing.T, c devstack.Config) devstack.Stack {
	t.Helper()
	c.HTTPAddr, c.KafkaAddr, c.RegistryAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if c.Partitions == 0 {
		c.Partitions = 3
	}
	c.LogLevel = "warn"
	ready := make(chan devstack.Stack, 1)
	c.Ready = func(s devstack.Stack) { ready <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- devstack.Run(ctx, c) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("devstack stopped with %v", err)
		}
	}
	select {
	case s := <-ready:
		t.Cleanup(stop)
		return s
	case err := <-done:
		cancel()
		t.Fatalf("devstack did not start: %v", err)
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("devstack not ready after 30s")
	}
	return devstack.Stack{}
}

// client calls a devstack's HTTP API.
type client struct {
	t    *testing.T
	base string
}

// do sends a request with a bearer token and returns the status and the
// decoded body.
func (c client) do(method, path, auth, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: answer is not JSON: %s", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

func (c client) want(status int, method, path, auth, body string) map[string]any {
	c.t.Helper()
	got, out := c.do(method, path, auth, body)
	if got != status {
		c.t.Fatalf("%s %s = %d %v, want %d", method, path, got, out, status)
	}
	return out
}

// until polls a request until it answers status, within seconds, and
// returns how long that took: a key just made works at ingest once
// ingest's view of the configuration has it.
func (c client) until(status int, method, path, auth, body string) time.Duration {
	c.t.Helper()
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got, out := c.do(method, path, auth, body)
		if got == status {
			return time.Since(start)
		}
		select {
		case <-tick.C:
		case <-time.After(seconds - time.Since(start)):
			c.t.Fatalf("%s %s still answers %d %v after %s, want %d", method, path, got, out, seconds, status)
		}
	}
}

const balanceEvent = `{"entityType":"Balance","entityId":"bal-9","operation":"UPDATE","accountId":"acct-9",` +
	`"old":{"id":"bal-9","accountId":"acct-9","unit":"MB","total":1000,"used":100,"remaining":900},` +
	`"new":{"id":"bal-9","accountId":"acct-9","unit":"MB","total":1000,"used":200,"remaining":800}}`

// TestDevstackSeedsTheDemoTenantThroughTheOperatorRoutes restarts a
// devstack on one data folder: the demo tenant is the operator's to see,
// a generated key replaces the last run's, and a configured key keeps
// working across restarts.
func TestDevstackSeedsTheDemoTenantThroughTheOperatorRoutes(t *testing.T) {
	dir := t.TempDir()
	const token = "hop_test_0123456789abcdef"
	run := func(key string) (devstack.Stack, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		ready := make(chan devstack.Stack, 1)
		done := make(chan error, 1)
		go func() {
			done <- devstack.Run(ctx, devstack.Config{
				HTTPAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0",
				APIKey: key, AdminToken: token, DataDir: dir, Partitions: 1, LogLevel: "warn",
				Ready: func(s devstack.Stack) { ready <- s },
			})
		}()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("devstack stopped with %v", err)
				}
			})
		}
		t.Cleanup(stop)
		select {
		case s := <-ready:
			return s, stop
		case err := <-done:
			done <- nil // for stop, which waits for the devstack to end
			t.Fatalf("devstack did not start: %v", err)
		case <-time.After(30 * time.Second):
			stop()
			t.Fatal("devstack not ready after 30s")
		}
		return devstack.Stack{}, nil
	}

	first, stop := run("")
	c := client{t, "http://" + first.HTTPAddr}
	if first.AdminToken != token {
		t.Errorf("Stack.AdminToken = %q, want the configured token", first.AdminToken)
	}
	tenant := c.want(http.StatusOK, "GET", "/v1/tenants/"+devstack.DemoTenant, token, "")
	if tenant["name"] != "Demo" {
		t.Errorf("demo tenant = %v", tenant)
	}
	c.want(http.StatusOK, "GET", "/v1/rules", first.APIKey, "")
	stop()

	second, stop := run("")
	c = client{t, "http://" + second.HTTPAddr}
	if second.APIKey == first.APIKey {
		t.Fatal("the second run printed the first run's generated key")
	}
	c.want(http.StatusOK, "GET", "/v1/rules", second.APIKey, "")
	c.want(http.StatusUnauthorized, "GET", "/v1/rules", first.APIKey, "")
	stop()

	for range 2 {
		chosen, stop := run("hk_chosen_key")
		c = client{t, "http://" + chosen.HTTPAddr}
		if chosen.APIKey != "hk_chosen_key" {
			t.Errorf("APIKey = %q, want the configured one", chosen.APIKey)
		}
		c.want(http.StatusOK, "GET", "/v1/rules", "hk_chosen_key", "")
		stop()
	}
}

// TestRevokedKeyStopsAtIngestWithinSeconds revokes a key through the
// admin API and watches ingest, a service with its own view of the
// configuration, refuse it.
func TestRevokedKeyStopsAtIngestWithinSeconds(t *testing.T) {
	s := startDevstack(t, devstack.Config{APIKey: "hk_demo_admin"})
	c := client{t, "http://" + s.HTTPAddr}
	created := c.want(http.StatusCreated, "POST", "/v1/api-keys", s.APIKey, `{"name":"upstream","scopes":["events:write"]}`)
	key, id := created["key"].(string), created["id"].(string)
	c.until(http.StatusAccepted, "POST", "/v1/events", key, balanceEvent)

	c.want(http.StatusNoContent, "DELETE", "/v1/api-keys/"+id, s.APIKey, "")
	took := c.until(http.StatusUnauthorized, "POST", "/v1/events", key, balanceEvent)
	t.Logf("ingest refused the revoked key %s after the revocation answered", took)
	c.want(http.StatusAccepted, "POST", "/v1/events", s.APIKey, balanceEvent)
}

// TestDeletedTenantStopsEverywhere deletes a tenant that has a rule and a
// webhook: its keys stop at ingest, and an event of it produced straight
// to Kafka reaches no one, while another tenant's event behind it does.
func TestDeletedTenantStopsEverywhere(t *testing.T) {
	// One partition, so the deleted tenant's event is judged before the
	// other tenant's that follows it.
	s := startDevstack(t, devstack.Config{APIKey: "hk_demo_admin", Partitions: 1})
	c := client{t, "http://" + s.HTTPAddr}
	hooks := make(chan string, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n struct {
			TenantID string `json:"tenantId"`
		}
		_ = json.NewDecoder(r.Body).Decode(&n)
		hooks <- n.TenantID
	}))
	t.Cleanup(receiver.Close)
	rule := func(key string) {
		dest := c.want(http.StatusCreated, "POST", "/v1/destinations", key, `{"type":"webhook","name":"hook","webhook":{"url":"`+receiver.URL+`"}}`)
		c.want(http.StatusCreated, "POST", "/v1/rules", key, `{"name":"any","on":{"entityTypes":["Balance"]},"when":"true",`+
			`"notification":{"name":"Changed","state":"changed"},"destinations":["`+dest["id"].(string)+`"]}`)
	}
	created := c.want(http.StatusCreated, "POST", "/v1/tenants", s.AdminToken, `{"id":"acme","name":"Acme"}`)
	acme := created["apiKey"].(map[string]any)["key"].(string)
	rule(acme)
	rule(s.APIKey)
	c.until(http.StatusAccepted, "POST", "/v1/events", acme, balanceEvent)
	seen := map[string]bool{}
	for !seen["acme"] {
		select {
		case tenant := <-hooks:
			seen[tenant] = true
		case <-time.After(30 * time.Second):
			t.Fatal("acme's event did not reach its webhook before the deletion")
		}
	}

	c.want(http.StatusNoContent, "DELETE", "/v1/tenants/acme", s.AdminToken, "")
	c.want(http.StatusUnauthorized, "GET", "/v1/rules", acme, "")
	c.until(http.StatusUnauthorized, "POST", "/v1/events", acme, balanceEvent)

	// acme's upstream still produces to Kafka.
	ctx := t.Context()
	src, err := sr.NewClient(sr.URLs("http://" + s.RegistryAddr))
	if err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	if err := json.Unmarshal([]byte(balanceEvent), &ev); err != nil {
		t.Fatal(err)
	}
	key, value, err := event.Encode(ctx, havro.NewRegistry(src, time.Minute), "herald.events", "acme", &ev, "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "herald.events", Key: key, Value: value}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c.want(http.StatusAccepted, "POST", "/v1/events", s.APIKey, balanceEvent)
	for done := false; !done; {
		select {
		case tenant := <-hooks:
			if tenant == "acme" {
				t.Fatal("a webhook of the deleted tenant acme was called")
			}
			done = tenant == devstack.DemoTenant
		case <-time.After(30 * time.Second):
			t.Fatal("the demo tenant's event did not reach its webhook")
		}
	}
	// The notifications topic has one partition too: any notification of
	// acme's event comes before the demo tenant's first.
	notes := servicetest.Reader(t, []string{s.KafkaAddr}, "herald.notifications")
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	acmeNotes := 0
	for demoSeen := false; !demoSeen; {
		fs := notes.PollFetches(wait)
		if wait.Err() != nil {
			t.Fatalf("the demo tenant's notification is not in the topic: %v", wait.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case demoSeen:
			case strings.HasPrefix(string(r.Key), "acme/"):
				acmeNotes++
			case strings.HasPrefix(string(r.Key), devstack.DemoTenant+"/"):
				demoSeen = true
			}
		})
	}
	if acmeNotes != 1 {
		t.Errorf("acme has %d notifications, want only the one from before its deletion", acmeNotes)
	}
}

// TestDeletedTenantsDeliveriesInFlightAreDropped deletes a tenant while a
// delivery of its waits for a retry: the sender drops it instead of
// trying again, and says so in the deliveries topic.
func TestDeletedTenantsDeliveriesInFlightAreDropped(t *testing.T) {
	s := startDevstack(t, devstack.Config{APIKey: "hk_demo_admin"})
	c := client{t, "http://" + s.HTTPAddr}
	calls := make(chan string, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- r.Header.Get("webhook-id")
		w.WriteHeader(http.StatusServiceUnavailable) // every call fails: the sender retries
	}))
	t.Cleanup(receiver.Close)
	created := c.want(http.StatusCreated, "POST", "/v1/tenants", s.AdminToken, `{"id":"acme","name":"Acme"}`)
	acme := created["apiKey"].(map[string]any)["key"].(string)
	dest := c.want(http.StatusCreated, "POST", "/v1/destinations", acme, `{"type":"webhook","name":"hook","webhook":{"url":"`+receiver.URL+`"}}`)
	c.want(http.StatusCreated, "POST", "/v1/rules", acme, `{"name":"any","on":{"entityTypes":["Balance"]},"when":"true",`+
		`"notification":{"name":"Changed","state":"changed"},"destinations":["`+dest["id"].(string)+`"]}`)
	c.until(http.StatusAccepted, "POST", "/v1/events", acme, balanceEvent)
	var id string
	select {
	case id = <-calls:
	case <-time.After(30 * time.Second):
		t.Fatal("acme's webhook was not called")
	}
	c.want(http.StatusNoContent, "DELETE", "/v1/tenants/acme", s.AdminToken, "")
	deleted := time.Now()

	// The next attempt finds the destination gone.
	src, err := sr.NewClient(sr.URLs("http://" + s.RegistryAddr))
	if err != nil {
		t.Fatal(err)
	}
	reg := havro.NewRegistry(src, time.Minute)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr), kgo.ConsumeTopics("herald.deliveries"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	wait, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for skipped := false; !skipped; {
		fs := cl.PollFetches(wait)
		if wait.Err() != nil {
			t.Fatal("no attempt of the deleted tenant's notification says it was dropped")
		}
		fs.EachRecord(func(r *kgo.Record) {
			var a engine.Attempt
			if _, err := reg.Decode(wait, r.Value, &a); err != nil {
				t.Errorf("attempt at offset %d: %v", r.Offset, err)
				return
			}
			if a.NotificationID == id && a.Outcome == engine.OutcomeSkipped {
				skipped = true
				if a.ErrorClass == nil || *a.ErrorClass != "destination-deleted" {
					t.Errorf("the skipped attempt's class = %v, want destination-deleted", a.ErrorClass)
				}
			}
		})
	}
	for {
		select {
		case got := <-calls:
			t.Errorf("the sender called acme's webhook for %s %s after the deletion", got, time.Since(deleted))
		default:
			return
		}
	}
}
