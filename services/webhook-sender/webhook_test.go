package webhooksender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/webhook"
)

// captured is one request a test receiver got.
type captured struct {
	header http.Header
	body   []byte
	query  string
}

// receiver answers every request with status and keeps what it got.
func receiver(t *testing.T, status int) (*httptest.Server, func() []captured) {
	t.Helper()
	var mu sync.Mutex
	var got []captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Header.Clone(), b, r.URL.RawQuery})
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = w.Write([]byte("thanks"))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), got...)
	}
}

func devWebhook(t testing.TB) *Webhook {
	t.Helper()
	p, err := egress.New(egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"})
	if err != nil {
		t.Fatal(err)
	}
	return NewWebhook(p, 8, 5*time.Second, nil)
}

func secret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomNotification returns a notification with random content, as a
// rule could produce it.
func randomNotification(r *rand.Rand) *notification.Notification {
	str := func(n int) string {
		const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.:;-_/\"\\éß漢字"
		rs := []rune(chars)
		out := make([]rune, n)
		for i := range out {
			out[i] = rs[r.IntN(len(rs))]
		}
		return string(out)
	}
	entity, _ := json.Marshal(map[string]any{"id": str(8), "total": r.Float64() * 1e6, "note": str(r.IntN(200))})
	e := string(entity)
	th := float64(r.IntN(100))
	acct := str(10)
	return &notification.Notification{
		ID: notification.ID(str(6), str(26), str(8)), TenantID: str(6), RuleID: "rul_" + str(8), Name: str(12), State: str(5),
		Threshold: &th, OrderingKey: acct, Ordered: r.IntN(2) == 0, CreatedAt: time.UnixMilli(r.Int64N(2e12)).UTC(),
		Event: notification.EventRef{ID: str(26), EntityType: "Balance", EntityID: str(8), Operation: "UPDATE",
			OccurredAt: time.UnixMilli(r.Int64N(2e12)).UTC(), AccountID: &acct},
		New:    &e,
		Fields: map[string]string{"k": strconv.Quote(str(20))},
	}
}

// TestSignaturesVerifyWithTheReferenceLibrary delivers 1,000 random
// notifications and checks each with the Standard Webhooks reference
// verifier, then changes each byte of each body (and of the id and the
// timestamp) and checks the verifier refuses every change.
func TestSignaturesVerifyWithTheReferenceLibrary(t *testing.T) {
	srv, got := receiver(t, http.StatusNoContent)
	wh := devWebhook(t)
	r := rand.New(rand.NewPCG(1, 2))
	sec := secret(t)
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: srv.URL + "/hook",
		Secrets: []configstore.SigningSecret{{Secret: sec}}}}
	const n = 1000
	want := map[string][]byte{}
	for range n {
		no := randomNotification(r)
		body, _ := no.JSON()
		want[no.ID] = body
		if _, err := wh.Deliver(t.Context(), &delivery.Delivery{Notification: no, DestinationID: "d", Destination: dest, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	verifier, err := standardwebhooks.NewWebhook(sec)
	if err != nil {
		t.Fatal(err)
	}
	reqs := got()
	if len(reqs) != n {
		t.Fatalf("receiver got %d requests, want %d", len(reqs), n)
	}
	var refusedChanges int
	for _, c := range reqs {
		id := c.header.Get(webhook.HeaderID)
		if !bytes.Equal(c.body, want[id]) {
			t.Fatalf("body of %s is not the notification's native JSON", id)
		}
		if err := verifier.Verify(c.body, c.header); err != nil {
			t.Fatalf("reference verifier refuses %s: %v", id, err)
		}
		for i := range c.body {
			changed := bytes.Clone(c.body)
			changed[i] ^= byte(1 + r.IntN(255))
			if verifier.Verify(changed, c.header) == nil {
				t.Fatalf("%s: body with byte %d changed verifies", id, i)
			}
			refusedChanges++
		}
		for _, name := range []string{webhook.HeaderID, webhook.HeaderTimestamp} {
			v := []byte(c.header.Get(name))
			for i := range v {
				changed := bytes.Clone(v)
				changed[i] ^= byte(1 + r.IntN(255))
				h := c.header.Clone()
				h.Set(name, string(changed))
				if verifier.Verify(c.body, h) == nil {
					t.Fatalf("%s: %s with byte %d changed verifies", id, name, i)
				}
				refusedChanges++
			}
		}
	}
	t.Logf("%d deliveries verified; %d one-byte changes refused", n, refusedChanges)
}

// TestBothSecretsSignDuringRotation shows a receiver holding either the
// old or the new secret verifies, and one that holds an expired secret
// does not.
func TestBothSecretsSignDuringRotation(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	wh := devWebhook(t)
	old, cur, gone := secret(t), secret(t), secret(t)
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: srv.URL, Secrets: []configstore.SigningSecret{
		{Secret: gone, ExpiresAt: &past}, {Secret: old, ExpiresAt: &future}, {Secret: cur},
	}}}
	if _, err := wh.Deliver(t.Context(), &delivery.Delivery{Notification: notification.Sample(), Destination: dest, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	c := got()[0]
	if sigs := strings.Fields(c.header.Get(webhook.HeaderSignature)); len(sigs) != 2 {
		t.Fatalf("webhook-signature = %q, want two signatures", c.header.Get(webhook.HeaderSignature))
	}
	for name, s := range map[string]string{"old": old, "current": cur} {
		v, _ := standardwebhooks.NewWebhook(s)
		if err := v.Verify(c.body, c.header); err != nil {
			t.Errorf("the %s secret does not verify: %v", name, err)
		}
	}
	v, _ := standardwebhooks.NewWebhook(gone)
	if v.Verify(c.body, c.header) == nil {
		t.Error("the expired secret still verifies")
	}
}

func TestOutcomesAreClassified(t *testing.T) {
	cases := []struct {
		status     int
		retryAfter string
		kind       delivery.Kind
		class      string
		after      time.Duration
		delivered  bool
	}{
		{status: 200, delivered: true},
		{status: 204, delivered: true},
		{status: 301, kind: delivery.Retry, class: "redirect"},
		{status: 307, kind: delivery.Retry, class: "redirect"},
		{status: 400, kind: delivery.Permanent, class: "status"},
		{status: 401, kind: delivery.Permanent, class: "status"},
		{status: 404, kind: delivery.Permanent, class: "status"},
		{status: 408, kind: delivery.Retry, class: "status"},
		{status: 410, kind: delivery.Gone, class: "status"},
		{status: 413, kind: delivery.Permanent, class: "status"},
		{status: 429, kind: delivery.Retry, class: "status"},
		{status: 429, retryAfter: "7", kind: delivery.Retry, class: "status", after: 7 * time.Second},
		{status: 503, retryAfter: "2", kind: delivery.Retry, class: "status", after: 2 * time.Second},
		{status: 500, kind: delivery.Retry, class: "status"},
		{status: 502, kind: delivery.Retry, class: "status"},
	}
	wh := devWebhook(t)
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d%s", c.status, c.retryAfter), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.retryAfter != "" {
					w.Header().Set("Retry-After", c.retryAfter)
				}
				if c.status >= 300 && c.status < 400 {
					w.Header().Set("Location", "http://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(c.status)
				_, _ = w.Write(bytes.Repeat([]byte("x"), 10<<10))
			}))
			defer srv.Close()
			dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: srv.URL, Secrets: []configstore.SigningSecret{{Secret: secret(t)}}}}
			resp, err := wh.Deliver(t.Context(), &delivery.Delivery{Notification: notification.Sample(), Destination: dest, Attempt: 1})
			if resp.StatusCode != c.status {
				t.Errorf("status = %d", resp.StatusCode)
			}
			if c.status != http.StatusNoContent && len(resp.Excerpt) != delivery.MaxExcerpt {
				t.Errorf("excerpt is %d bytes, want the first %d", len(resp.Excerpt), delivery.MaxExcerpt)
			}
			if c.delivered {
				if err != nil {
					t.Errorf("not delivered: %v", err)
				}
				return
			}
			var ae *delivery.AttemptError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an AttemptError", err)
			}
			if ae.Kind != c.kind || ae.Class != c.class || ae.After != c.after {
				t.Errorf("got %v/%s/%v, want %v/%s/%v", ae.Kind, ae.Class, ae.After, c.kind, c.class, c.after)
			}
		})
	}
}

func TestRetryAfterDate(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if d, ok := retryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now); !ok || d != 90*time.Second {
		t.Errorf("HTTP date: %v %v", d, ok)
	}
	if _, ok := retryAfter("soon", now); ok {
		t.Error("garbage accepted")
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	p, _ := egress.New(egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"})
	wh := NewWebhook(p, 2, 200*time.Millisecond, nil)
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: srv.URL, Secrets: []configstore.SigningSecret{{Secret: secret(t)}}}}
	// The first attempt from a parent has a deadline of its own; those
	// after it from the same parent share one.
	parent := context.Background()
	for attempt := 1; attempt <= 3; attempt++ {
		_, err := wh.Deliver(parent, &delivery.Delivery{Notification: notification.Sample(), Destination: dest, Attempt: attempt})
		var ae *delivery.AttemptError
		if !errors.As(err, &ae) || ae.Kind != delivery.Retry || ae.Class != "timeout" {
			t.Errorf("attempt %d: err = %v, want a retried timeout", attempt, err)
		}
	}
}

// TestRefusedConnectionIsRetried pins that a receiver that is not
// listening is a connection failure, retried.
func TestRefusedConnectionIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, _ := egress.New(egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"})
	wh := NewWebhook(p, 2, 5*time.Second, nil)
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: "http://" + addr + "/hook", Secrets: []configstore.SigningSecret{{Secret: secret(t)}}}}
	_, err = wh.Deliver(t.Context(), &delivery.Delivery{Notification: notification.Sample(), Destination: dest, Attempt: 1})
	var ae *delivery.AttemptError
	if !errors.As(err, &ae) || ae.Kind != delivery.Retry || ae.Class != "connect" {
		t.Errorf("err = %v, want a retried connect failure", err)
	}
}

func TestHeadersParametersAndFormat(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	wh := devWebhook(t)
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{
		URL:        srv.URL + "/in?fixed=1",
		Headers:    map[string]string{"Authorization": "Bearer tenant-token", "X-Env": "prod"},
		Parameters: []configstore.Parameter{{Name: "account", Value: "{{.event.accountId}}"}, {Name: "source", Value: "herald"}},
		Format:     configstore.FormatTruphone,
		Secrets:    []configstore.SigningSecret{{Secret: secret(t)}},
	}}
	n := notification.Sample()
	n.Fields["subscription_id"] = `"sub-1"`
	if _, err := wh.Deliver(t.Context(), &delivery.Delivery{Notification: n, Destination: dest, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	c := got()[0]
	if c.header.Get("Authorization") != "Bearer tenant-token" || c.header.Get("X-Env") != "prod" {
		t.Errorf("destination headers missing: %v", c.header)
	}
	if c.query != "account=acct-1&fixed=1&source=herald" {
		t.Errorf("query = %q", c.query)
	}
	var body map[string]any
	_ = json.Unmarshal(c.body, &body)
	if body["type"] != n.Name || body["id"] != n.ID || body["subscription_id"] != "sub-1" || body["iccid"] != "dev-1" {
		t.Errorf("truphone body = %s", c.body)
	}
	if c.header.Get("Content-Type") != "application/json" || c.header.Get(webhook.HeaderID) != n.ID {
		t.Errorf("headers = %v", c.header)
	}
}
