package devstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/webhook"
	"github.com/heraldhq/herald/services/devstack"
)

// realStack is every service on the real broker, with a secret key, and
// the demo tenant's API.
type realStack struct {
	t     *testing.T
	api   string
	key   string
	kafka kafka.Config
}

func startRealStack(t *testing.T) *realStack {
	t.Helper()
	kc := kafka.Config{Brokers: kafkatest.Brokers(t), TopicPrefix: kafkatest.Prefix(t), Partitions: 3, ReplicationFactor: 1, CreateTopics: true}
	ownGroups(t, kc.TopicPrefix)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	secretKey := make([]byte, configstore.KeySize)
	_, _ = rand.Read(secretKey)
	ctx, cancel := context.WithCancel(t.Context())
	keys := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- devstack.RunServices(ctx, devstack.Services{
			Common: service.Config{
				Kafka:    kc,
				Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Second},
				Secrets:  configstore.KeyConfig{Key: base64.StdEncoding.EncodeToString(secretKey)},
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
	s := &realStack{t: t, api: "http://" + ln.Addr().String(), kafka: kc}
	select {
	case s.key = <-keys:
	case err := <-done:
		done <- nil // for the cleanup, which waits for the services to stop
		t.Fatalf("services did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("services not ready after 60s")
	}
	return s
}

// call sends a request to the admin or ingest API and returns the JSON
// answer, failing unless the status is want.
func (s *realStack) call(method, path, body string, want int) map[string]any {
	s.t.Helper()
	req, _ := http.NewRequestWithContext(s.t.Context(), method, s.api+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: answer is not JSON: %s", method, path, raw)
		}
	}
	return out
}

// hook is a webhook request a receiver got.
type hook struct {
	path   string
	header http.Header
	body   []byte
}

// simEvent is a balance update of a SIM's data allowance from 30% left
// to 10% left.
func simEvent(iccid string) string {
	balance := func(remaining int) string {
		b, _ := json.Marshal(map[string]any{"id": "bal-" + iccid, "accountId": "acct-1", "unit": "MB", "kind": "allowance",
			"total": 1000, "used": 1000 - remaining, "remaining": remaining, "planId": "plan-" + iccid})
		return string(b)
	}
	return `{"entityType":"Balance","entityId":"bal-` + iccid + `","operation":"UPDATE","accountId":"acct-1","deviceId":"` + iccid + `",` +
		`"old":` + balance(300) + `,"new":` + balance(100) + `}`
}

// TestSubscriptionGetsItsSimsNotificationsOnRealBroker registers webhooks
// on two SIMs, as Truphone does, and drives balance events of each through
// ingest, the evaluator and the webhook sender on the real broker: each
// subscription's URL gets the notifications of its own SIM, signed with
// the tenant's subscription secret, and nothing once deleted.
func TestSubscriptionGetsItsSimsNotificationsOnRealBroker(t *testing.T) {
	s := startRealStack(t)
	hooks := make(chan hook, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hooks <- hook{r.URL.Path, r.Header.Clone(), body}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	next := func() hook {
		t.Helper()
		select {
		case h := <-hooks:
			return h
		case <-time.After(30 * time.Second):
			t.Fatal("no webhook within 30s")
			return hook{}
		}
	}

	// A rule with no destination of its own: only subscriptions get it.
	s.call("POST", "/v1/rules", `{"name":"usage","on":{"entityTypes":["Balance"],"operations":["UPDATE"]},`+
		`"when":"crossedBelow(pct(old.remaining, old.total), pct(new.remaining, new.total), 20)",`+
		`"notification":{"name":"USAGE_THRESHOLD","state":"reached","threshold":80}}`, http.StatusCreated)

	const simA, simB = "8944474600000109251", "8944474600000109252"
	first := s.call("PUT", "/v1/resources/Sim/"+simA+"/subscriptions/USAGE_THRESHOLD", `{"webhookUrl":"`+receiver.URL+`/old"}`, http.StatusCreated)
	secret, _ := first["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("the tenant's first subscription should show its signing secret once: %v", first)
	}
	// A second PUT replaces the first.
	again := s.call("PUT", "/v1/resources/sim/"+simA+"/subscriptions/USAGE_THRESHOLD", `{"webhookUrl":"`+receiver.URL+`/a","format":"truphone"}`, http.StatusOK)
	if _, shown := again["secret"]; shown {
		t.Errorf("a later PUT shows the secret again: %v", again)
	}
	s.call("PUT", "/v1/resources/Sim/"+simB+"/subscriptions/USAGE_THRESHOLD", `{"webhookUrl":"`+receiver.URL+`/b"}`, http.StatusCreated)
	listed := s.call("GET", "/v1/resources/Sim/"+simA+"/subscriptions", "", http.StatusOK)
	if items, _ := listed["items"].([]any); len(items) != 1 || items[0].(map[string]any)["webhookUrl"] != receiver.URL+"/a" {
		t.Errorf("SIM A lists %v, want its one subscription to /a", listed)
	}

	s.call("POST", "/v1/events", simEvent(simA), http.StatusAccepted)
	h := next()
	if h.path != "/a" {
		t.Fatalf("SIM A's notification went to %s, want /a", h.path)
	}
	var payload map[string]any
	if err := json.Unmarshal(h.body, &payload); err != nil {
		t.Fatalf("body %s: %v", h.body, err)
	}
	if payload["type"] != "USAGE_THRESHOLD" || payload["iccid"] != simA || payload["threshold"] != 80.0 {
		t.Errorf("Truphone payload %s, want type USAGE_THRESHOLD, iccid %s, threshold 80", h.body, simA)
	}
	if err := webhook.Verify(secret, h.header, h.body, time.Now(), 5*time.Minute); err != nil {
		t.Errorf("the subscription secret does not verify the notification: %v", err)
	}

	// Once A's subscription is gone, A's events reach no one. B takes
	// over A's old URL and format: its notifications share the lane A's
	// would take (same ordering key, same destination), so were A's event
	// still sent, it would arrive first.
	s.call("DELETE", "/v1/resources/Sim/"+simA+"/subscriptions/USAGE_THRESHOLD", "", http.StatusNoContent)
	s.call("DELETE", "/v1/resources/Sim/"+simA+"/subscriptions/USAGE_THRESHOLD", "", http.StatusNotFound)
	s.call("PUT", "/v1/resources/Sim/"+simB+"/subscriptions/USAGE_THRESHOLD", `{"webhookUrl":"`+receiver.URL+`/a","format":"truphone"}`, http.StatusOK)
	s.call("POST", "/v1/events", simEvent(simA), http.StatusAccepted)
	s.call("POST", "/v1/events", simEvent(simB), http.StatusAccepted)
	h = next()
	if err := json.Unmarshal(h.body, &payload); err != nil || h.path != "/a" || payload["iccid"] != simB {
		t.Errorf("after A's subscription was deleted, %s got %s; want B's notification only", h.path, h.body)
	}
}

// TestNoSecretInTheRawConfigTopic creates a webhook destination, an SMTP
// profile with a password and a subscription through the API, then reads
// the config topic straight from the real broker: none of the secrets is
// in it in the clear, and no answer after creation shows them.
func TestNoSecretInTheRawConfigTopic(t *testing.T) {
	s := startRealStack(t)
	const password = "smtp-password-must-not-leak"
	dest := s.call("POST", "/v1/destinations", `{"type":"webhook","name":"ops","webhook":{"url":"https://hooks.example.com/h"}}`, http.StatusCreated)
	destSecret, _ := dest["secret"].(string)
	profile := s.call("POST", "/v1/smtp-profiles", `{"name":"main","host":"smtp.example.com","fromAddress":"billing@example.com","username":"herald","password":"`+password+`"}`, http.StatusCreated)
	sub := s.call("PUT", "/v1/resources/Sim/8944/subscriptions/USAGE_THRESHOLD", `{"webhookUrl":"https://hooks.example.com/sim"}`, http.StatusCreated)
	subSecret, _ := sub["secret"].(string)
	if destSecret == "" || subSecret == "" {
		t.Fatalf("the creations should show their secrets once: %v %v", dest, sub)
	}
	secrets := []string{destSecret, strings.TrimPrefix(destSecret, "whsec_"), subSecret, strings.TrimPrefix(subSecret, "whsec_"), password}

	for _, path := range []string{"/v1/destinations/" + dest["id"].(string), "/v1/destinations", "/v1/smtp-profiles/" + profile["id"].(string),
		"/v1/smtp-profiles", "/v1/subscription-settings", "/v1/resources/Sim/8944/subscriptions"} {
		raw, _ := json.Marshal(s.call("GET", path, "", http.StatusOK))
		for _, secret := range secrets[2:] {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("GET %s shows a secret: %s", path, raw)
			}
		}
	}
	if profile["passwordSet"] != true || profile["password"] != nil {
		t.Errorf("an SMTP profile answers %v, want passwordSet and no password", profile)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(s.kafka.Brokers...), kgo.ConsumeTopics(s.kafka.Topics().Config),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, s.kafka.Topics().Config)
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	ends.Each(func(o kadm.ListedOffset) { left += int(o.Offset) })
	sealed := map[string]bool{}
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("config topic: %d records not read", left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			left--
			for _, secret := range secrets {
				if bytes.Contains(r.Value, []byte(secret)) {
					t.Errorf("config record %s holds a secret in the clear: %s", r.Key, r.Value)
				}
			}
			if bytes.Contains(r.Value, []byte(`"spec":"hsk1:`)) {
				sealed[string(r.Key)] = true
			}
		})
	}
	for _, kind := range []string{configstore.KindDestination, configstore.KindSMTPProfile, configstore.KindSubscriptionSettings} {
		found := false
		for k := range sealed {
			found = found || strings.Contains(k, "/"+kind+"/")
		}
		if !found {
			t.Errorf("no sealed %s record in the config topic (sealed: %v)", kind, sealed)
		}
	}
}
