package webhooksender_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

const tenant = "t1"

// stack is what an integration test runs the sender against: its own
// topics on the real broker, a registry, the configuration view, and a
// client to write with.
type stack struct {
	t *testing.T
	*servicetest.Stack
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return &stack{t: t, Stack: servicetest.NewStack(t)}
}

// destination stores a webhook destination to url with a fresh secret.
func (s *stack) destination(id, url string, edit func(*configstore.Destination)) {
	s.t.Helper()
	d := configstore.Destination{Type: "webhook", Name: id, Webhook: &configstore.WebhookDestination{
		URL: url, Secrets: []configstore.SigningSecret{{Secret: "whsec_" + strings.Repeat("MDEyMzQ1Njc4OWFiY2RlZg==", 1)}},
	}}
	if edit != nil {
		edit(&d)
	}
	servicetest.Put(s.t, s.Store, tenant, configstore.KindDestination, id, d)
}

// hit is one request a sink got.
type hit struct {
	dest, id, key string
	seq           int
	body          string
}

// sink is a webhook receiver for many destinations (/d/{dest}) that keeps
// every request and answers with what respond says.
type sink struct {
	srv     *httptest.Server
	mu      sync.Mutex
	hits    []hit
	first   map[string]int         // dest/id → index of the first successful hit
	tries   map[string]int         // dest/id → requests so far
	respond func(h hit, n int) int // n: earlier requests for the same delivery; called concurrently
	changed chan struct{}
}

func newSink(t *testing.T, respond func(h hit, n int) int) *sink {
	k := &sink{first: map[string]int{}, tries: map[string]int{}, respond: respond, changed: make(chan struct{}, 1)}
	k.srv = httptest.NewServer(http.HandlerFunc(k.serve))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *sink) url(dest string) string { return k.srv.URL + "/d/" + dest }

func (k *sink) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var p struct {
		Fields struct {
			Key string `json:"key"`
			Seq int    `json:"seq"`
		} `json:"fields"`
	}
	_ = json.Unmarshal(b, &p)
	h := hit{dest: strings.TrimPrefix(r.URL.Path, "/d/"), id: r.Header.Get("webhook-id"), key: p.Fields.Key, seq: p.Fields.Seq, body: string(b)}
	k.mu.Lock()
	n := k.tries[h.dest+"/"+h.id]
	k.tries[h.dest+"/"+h.id]++
	k.mu.Unlock()
	status := http.StatusNoContent
	if k.respond != nil {
		status = k.respond(h, n)
	}
	k.mu.Lock()
	if status < 300 {
		if _, ok := k.first[h.dest+"/"+h.id]; !ok {
			k.first[h.dest+"/"+h.id] = len(k.hits)
		}
	}
	k.hits = append(k.hits, h)
	k.mu.Unlock()
	select {
	case k.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(status)
}

// delivered is the number of (destination, notification) pairs delivered.
func (k *sink) delivered() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.first)
}

// waitDelivered polls until n pairs are delivered or the deadline passes.
func (k *sink) waitDelivered(t *testing.T, n int, deadline time.Duration) {
	t.Helper()
	end := time.After(deadline)
	for k.delivered() < n {
		select {
		case <-k.changed:
		case <-end:
			t.Fatalf("%d of %d deliveries after %s", k.delivered(), n, deadline)
		}
	}
}

// checkOrder reports, per (destination, key), first deliveries that came
// out of order, and duplicates whose body differs from the first.
func (k *sink) checkOrder(t *testing.T, keyed func(dest string) bool) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	last := map[string]int{}
	body := map[string]string{}
	inversions, dups := 0, 0
	for i, h := range k.hits {
		id := h.dest + "/" + h.id
		if b, ok := body[id]; ok {
			dups++
			if b != h.body {
				t.Errorf("duplicate of %s has a different body", id)
			}
			continue
		}
		if k.first[id] != i {
			continue // a failed attempt
		}
		body[id] = h.body
		if !keyed(h.dest) {
			continue
		}
		lane := h.dest + "/" + h.key
		if prev, ok := last[lane]; (ok && h.seq != prev+1) || (!ok && h.seq != 0) {
			inversions++
			if inversions < 5 {
				t.Errorf("%s: %d delivered after %d", lane, h.seq, prev)
			}
		}
		last[lane] = h.seq
	}
	if inversions > 0 {
		t.Errorf("%d order inversions", inversions)
	}
	t.Logf("%d requests, %d deliveries, %d duplicates, 0 lost", len(k.hits), len(k.first), dups)
}
