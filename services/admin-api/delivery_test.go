package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// deliveryAPI is an admin API with production defaults on kfake, with
// tenants acme and other seeded, and a client to write the topics the
// senders would write.
type deliveryAPI struct {
	t          *testing.T
	url        string
	acme, othr string
	cl         *kgo.Client
	reg        *avro.Registry
	topics     kafka.Topics
}

func startDeliveryAPI(t *testing.T) *deliveryAPI {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var cfg adminapi.Config
	if err := envconfig.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Config = servicetest.Fakes(t, 2)
	api, err := adminapi.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Run(t, api)
	d := &deliveryAPI{t: t, topics: cfg.Kafka.Topics()}
	if d.acme, err = api.SeedTenant(ctx, "acme", "Acme", ""); err != nil {
		t.Fatal(err)
	}
	if d.othr, err = api.SeedTenant(ctx, "other", "Other", ""); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	d.url = srv.URL
	opts, _ := kafka.ClientOptions(cfg.Kafka, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if d.cl, err = kgo.NewClient(opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cl.Close)
	src, _ := sr.NewClient(sr.URLs(cfg.Registry.URL))
	d.reg = avro.NewRegistry(src, time.Minute)
	return d
}

func (d *deliveryAPI) call(key, method, path, body string, want int) map[string]any {
	d.t.Helper()
	req, _ := http.NewRequestWithContext(d.t.Context(), method, d.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		d.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out
}

func (d *deliveryAPI) produce(r *kgo.Record) {
	d.t.Helper()
	if err := d.cl.ProduceSync(d.t.Context(), r).FirstErr(); err != nil {
		d.t.Fatal(err)
	}
}

// poll calls f until it reports true or 15 seconds pass.
func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDestinationURLsCheckedWithTheEgressPolicy(t *testing.T) {
	d := startDeliveryAPI(t)
	for _, url := range []string{
		"https://127.0.0.1/hook", "https://localhost/hook", "https://[::ffff:10.0.0.1]/hook", "https://169.254.169.254/latest",
		"http://93.184.216.34/hook", "https://93.184.216.34:9000/hook", "https://100.64.0.1/hook",
	} {
		res := d.call(d.acme, "POST", "/v1/destinations", `{"type":"webhook","name":"x","webhook":{"url":"`+url+`"}}`, http.StatusBadRequest)
		if !strings.Contains(jsonText(t, res), `"field":"webhook.url"`) {
			t.Errorf("%s: refused without naming webhook.url: %s", url, jsonText(t, res))
		}
	}
	for body, field := range map[string]string{
		`{"type":"webhook","name":"x","webhook":{"url":"https://93.184.216.34/","headers":{"webhook-id":"x"}}}`:                      "webhook.headers.webhook-id",
		`{"type":"webhook","name":"x","webhook":{"url":"https://93.184.216.34/","secrets":[{"secret":"whsec_AA=="}]}}`:               "webhook.secrets",
		`{"type":"webhook","name":"x","webhook":{"url":"https://93.184.216.34/","format":"xml"}}`:                                    "webhook.format",
		`{"type":"webhook","name":"x","webhook":{"url":"https://93.184.216.34/","format":"template","template":{"body":"{{.name"}}}`: "webhook.template",
		`{"type":"webhook","name":"x","webhook":{"url":"https://93.184.216.34/","parameters":[{"name":"a","value":"{{"}]}}`:          "webhook.parameters[0].value",
		`{"type":"webhook","name":"x","retrySchedule":["5s","soon"],"webhook":{"url":"https://93.184.216.34/"}}`:                     "retrySchedule",
		`{"type":"webhook","name":"x","disabled":{"reason":"no"},"webhook":{"url":"https://93.184.216.34/"}}`:                        "disabled",
	} {
		res := d.call(d.acme, "POST", "/v1/destinations", body, http.StatusBadRequest)
		if !strings.Contains(jsonText(t, res), `"field":"`+field+`"`) {
			t.Errorf("%s: refused without naming %s: %s", body, field, jsonText(t, res))
		}
	}
}

func TestSigningSecretShownOnceAndRotated(t *testing.T) {
	d := startDeliveryAPI(t)
	created := d.call(d.acme, "POST", "/v1/destinations", `{"type":"webhook","name":"ops","webhook":{"url":"https://93.184.216.34/hook","format":"totogi"}}`, http.StatusCreated)
	id, _ := created["id"].(string)
	first, _ := created["secret"].(string)
	if !strings.HasPrefix(first, "whsec_") {
		t.Fatalf("created destination has no secret: %v", created)
	}
	got := d.call(d.acme, "GET", "/v1/destinations/"+id, "", http.StatusOK)
	list := d.call(d.acme, "GET", "/v1/destinations", "", http.StatusOK)
	for _, shown := range []map[string]any{got, list} {
		if strings.Contains(jsonText(t, shown), first) || strings.Contains(jsonText(t, shown), `"secrets"`) {
			t.Errorf("a read shows the secret: %s", jsonText(t, shown))
		}
	}
	if s := d.call(d.acme, "GET", "/v1/destinations/"+id+"/secret", "", http.StatusOK)["secret"]; s != first {
		t.Errorf("GET secret = %v, want the one created", s)
	}
	d.call(d.othr, "GET", "/v1/destinations/"+id+"/secret", "", http.StatusNotFound)

	rotated := d.call(d.acme, "POST", "/v1/destinations/"+id+":rotate-secret", `{"expireAfter":"1h"}`, http.StatusOK)
	second, _ := rotated["secret"].(string)
	if !strings.HasPrefix(second, "whsec_") || second == first {
		t.Fatalf("rotation gave %v", rotated)
	}
	if s := d.call(d.acme, "GET", "/v1/destinations/"+id+"/secret", "", http.StatusOK)["secret"]; s != second {
		t.Errorf("GET secret after rotation = %v, want the new one", s)
	}
	got = d.call(d.acme, "GET", "/v1/destinations/"+id, "", http.StatusOK)
	live, _ := got["webhook"].(map[string]any)["signingSecrets"].([]any)
	if len(live) != 2 {
		t.Errorf("after rotation %d live secrets, want 2: %s", len(live), jsonText(t, got))
	}
	// Replacing the destination keeps its secrets.
	d.call(d.acme, "PUT", "/v1/destinations/"+id, `{"type":"webhook","name":"ops2","webhook":{"url":"https://93.184.216.34/other"}}`, http.StatusOK)
	if s := d.call(d.acme, "GET", "/v1/destinations/"+id+"/secret", "", http.StatusOK)["secret"]; s != second {
		t.Errorf("GET secret after replace = %v, want it kept", s)
	}
	d.call(d.othr, "POST", "/v1/destinations/"+id+":rotate-secret", "", http.StatusNotFound)
}

func TestAttemptsDeadLettersAndReplay(t *testing.T) {
	d := startDeliveryAPI(t)
	created := d.call(d.acme, "POST", "/v1/destinations", `{"type":"webhook","name":"ops","webhook":{"url":"https://93.184.216.34/hook"}}`, http.StatusCreated)
	dest, _ := created["id"].(string)
	ctx := t.Context()

	n := notification.Sample()
	n.TenantID, n.Destinations, n.ID = "acme", []string{dest}, notification.ID("acme", "e1", "r1")
	ns, err := d.reg.Latest(ctx, d.topics.Notifications+"-herald.Notification")
	if err != nil {
		t.Fatal(err)
	}
	value, _ := ns.Encode(n)
	key := event.RecordKey("acme", n.OrderingKey)
	d.produce(&kgo.Record{Topic: d.topics.Notifications, Key: key, Value: value})

	as, err := d.reg.Latest(ctx, d.topics.Deliveries+"-herald.DeliveryAttempt")
	if err != nil {
		t.Fatal(err)
	}
	code := int32(503)
	class := "status"
	a := delivery.Attempt{NotificationID: n.ID, TenantID: "acme", DestinationID: dest, Channel: "webhook", Attempt: 1,
		StartedAt: time.UnixMilli(1700000000000), LatencyMs: 12, Outcome: delivery.OutcomeRetry, StatusCode: &code, ErrorClass: &class,
		OriginTopic: d.topics.Notifications, OriginPartition: 0, OriginOffset: 0}
	origin := findOrigin(t, d, n.ID)
	a.OriginPartition, a.OriginOffset = origin.Partition, origin.Offset
	av, _ := as.Encode(&a)
	d.produce(&kgo.Record{Topic: d.topics.Deliveries, Key: []byte(n.ID), Value: av})

	var attempts map[string]any
	poll(t, "attempt listed", func() bool {
		req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/v1/notifications/"+n.ID+"/attempts", nil)
		req.Header.Set("Authorization", "Bearer "+d.acme)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&attempts)
		return resp.StatusCode == http.StatusOK
	})
	items, _ := attempts["items"].([]any)
	if len(items) != 1 || !strings.Contains(jsonText(t, attempts), `"statusCode":503`) {
		t.Errorf("attempts = %s", jsonText(t, attempts))
	}
	d.call(d.othr, "GET", "/v1/notifications/"+n.ID+"/attempts", "", http.StatusNotFound)

	red := d.call(d.acme, "POST", "/v1/notifications/"+n.ID+":redeliver", "", http.StatusAccepted)
	if !strings.Contains(jsonText(t, red), dest) {
		t.Errorf("redeliver = %s", jsonText(t, red))
	}
	d.call(d.othr, "POST", "/v1/notifications/"+n.ID+":redeliver", "", http.StatusNotFound)

	en := delivery.Entry{Destination: dest, Attempts: 8, Ordered: true, ErrorClass: "status", Error: "endpoint answered 503", Origin: origin}
	d.produce(&kgo.Record{Topic: d.topics.DLQ("webhook"), Key: key, Value: value, Headers: en.Headers()})
	var dlq map[string]any
	poll(t, "dead letter listed", func() bool {
		dlq = d.call(d.acme, "GET", "/v1/dlq?destination="+dest, "", http.StatusOK)
		items, _ := dlq["items"].([]any)
		return len(items) == 1
	})
	if !strings.Contains(jsonText(t, dlq), n.ID) || !strings.Contains(jsonText(t, dlq), `"attempts":8`) {
		t.Errorf("dlq = %s", jsonText(t, dlq))
	}
	if items, _ := d.call(d.othr, "GET", "/v1/dlq", "", http.StatusOK)["items"].([]any); len(items) != 0 {
		t.Errorf("another tenant sees %d dead letters", len(items))
	}
	if r := d.call(d.acme, "POST", "/v1/dlq:replay", `{"destination":"`+dest+`"}`, http.StatusAccepted); r["replayed"] != 1.0 {
		t.Errorf("replay = %v, want 1", r)
	}
	if r := d.call(d.acme, "POST", "/v1/dlq:replay", `{"destination":"`+dest+`"}`, http.StatusAccepted); r["replayed"] != 0.0 {
		t.Errorf("second replay = %v, want 0", r)
	}

	// The redelivery and the replay are in the retry topic, due at once,
	// with no attempt made.
	retries := readAll(t, d, d.topics.Retry("webhook"), 2)
	for _, r := range retries {
		e, err := delivery.ParseEntry(r)
		if err != nil || e.Destination != dest || e.Attempts != 0 || !bytes.Equal(r.Value, value) {
			t.Errorf("retry entry %+v (%v)", e, err)
		}
	}
}

func findOrigin(t *testing.T, d *deliveryAPI, id string) delivery.Origin {
	t.Helper()
	for _, r := range readAll(t, d, d.topics.Notifications, 1) {
		return delivery.Origin{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	t.Fatalf("notification %s not found", id)
	return delivery.Origin{}
}

// readAll reads topic from the start until n records are read.
func readAll(t *testing.T, d *deliveryAPI, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append(d.cl.Opts(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		out = append(out, cl.PollFetches(ctx).Records()...)
	}
	if len(out) < n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}
