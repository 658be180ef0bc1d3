package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/ingest"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

// The load and the outage of TestAcceptedEventsSurviveBrokerRestart.
const (
	loadRate    = 200 // events per second
	loadFor     = 30 * time.Second
	outageAfter = 2 * time.Second // into the load
	// outage runs from the stop command to the start command; the broker
	// then takes ten seconds or more to start.
	outage = 10 * time.Second
	// recoverWithin is how long the load goes on after /readyz says ready
	// again, past loadFor if the broker was slow to start, but never past
	// loadAtMost.
	recoverWithin  = 15 * time.Second
	loadAtMost     = 90 * time.Second
	produceTimeout = 2 * time.Second
	// clientTimeout is well above produceTimeout, so that a 503 that
	// comes in time is ingest's doing, not the client's.
	clientTimeout = 30 * time.Second
)

// TestAcceptedEventsSurviveBrokerRestart posts events to ingest at a steady
// rate while the Kafka broker under ingest, the rule evaluator and the
// webhook sender is stopped for ten seconds and started again on its data.
// Every event answered 202 must reach the webhook receiver; while the broker
// is away ingest answers 503 with a Retry-After within its produce timeout
// and /readyz says not ready; after the restart every service carries on by
// itself, with no process restarted.
func TestAcceptedEventsSurviveBrokerRestart(t *testing.T) {
	kafkatest.Brokers(t) // run where integration tests run; this one brings its own broker
	start := time.Now()
	b := startBroker(t)
	p := startPipeline(t, b.addr)
	t.Logf("broker and services up in %v", time.Since(start).Round(100*time.Millisecond))

	load := newLoad(p.ingestURL)
	stop := make(chan struct{})
	stopLoad := sync.OnceFunc(func() { close(stop) })
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); load.run(loadRate, loadAtMost, stop) }()
	t.Cleanup(func() { stopLoad(); <-loadDone })

	time.Sleep(outageAfter) // a point in the load, not a wait for something
	down := time.Now()
	b.stop()
	p.waitReady(t, false, outage)
	t.Logf("broker stopping %v into the load; /readyz not ready %v later", down.Sub(load.started).Round(100*time.Millisecond), time.Since(down).Round(100*time.Millisecond))
	time.Sleep(time.Until(down.Add(outage))) // the outage itself
	b.resume()
	up := time.Now()
	p.waitReady(t, true, 30*time.Second)
	ready := time.Now()
	t.Logf("broker away for %v (%v of it starting again); /readyz ready %v after it was back",
		up.Sub(down).Round(100*time.Millisecond), up.Sub(down.Add(outage)).Round(100*time.Millisecond), ready.Sub(up).Round(100*time.Millisecond))
	time.AfterFunc(max(time.Until(load.started.Add(loadFor)), time.Until(ready.Add(recoverWithin))), stopLoad)
	<-loadDone

	res := load.results()
	// Thousands of events may fail alike: the first few tell.
	wrong := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if wrong++; wrong <= 5 {
			t.Errorf(format, args...)
		}
	}
	defer func() {
		if wrong > 5 {
			t.Errorf("and %d more like these", wrong-5)
		}
	}()
	var accepted []string
	var unavailable int
	var slowest503 time.Duration
	// recovered is when the first event posted after /readyz said ready
	// again was sent, if one was accepted.
	var recovered time.Time
	for _, r := range res {
		switch {
		case r.err != nil:
			fail("event %s: no answer: %v", r.id, r.err)
		case r.status == http.StatusAccepted:
			accepted = append(accepted, r.id)
			if r.sent.After(ready) && (recovered.IsZero() || r.sent.Before(recovered)) {
				recovered = r.sent
			}
		case r.status == http.StatusServiceUnavailable:
			unavailable++
			slowest503 = max(slowest503, r.took)
			if s, err := strconv.Atoi(r.retryAfter); err != nil || s < 1 {
				fail("event %s: 503 with Retry-After %q, want whole seconds", r.id, r.retryAfter)
			}
		default:
			fail("event %s: %d %s, want 202 or 503", r.id, r.status, r.body)
		}
	}
	t.Logf("%d events posted in %v: %d accepted, %d answered 503 (the slowest in %v)",
		len(res), load.took.Round(100*time.Millisecond), len(accepted), unavailable, slowest503.Round(10*time.Millisecond))
	if unavailable == 0 {
		t.Error("no event was answered 503 while the broker was away")
	}
	// Ingest gives up at its produce timeout; the slack is for scheduling
	// on a busy machine (a load of 10 on 2 cores was seen to add a
	// second), and stays far below the client's own timeout.
	if limit := produceTimeout + 4*time.Second; slowest503 > limit {
		t.Errorf("the slowest 503 took %v, want the produce timeout %v (%v with slack)", slowest503, produceTimeout, limit)
	}
	if recovered.IsZero() {
		t.Errorf("no event posted in the %v after /readyz said ready again was accepted", recoverWithin)
	} else {
		t.Logf("accepting again %v after /readyz said ready", recovered.Sub(ready).Round(10*time.Millisecond))
		// An event posted just after that may still fail with the
		// records of a timed-out request queued before it; one posted a
		// produce timeout later has none of those left before it.
		settled := recovered.Add(produceTimeout)
		for _, r := range res {
			if r.sent.After(settled) && r.status != http.StatusAccepted {
				fail("event %s: %d %v after ingest accepted events again, want 202", r.id, r.status, r.sent.Sub(recovered))
			}
		}
	}
	for outcome, want := range map[string]int{"accepted": len(accepted), "unavailable": unavailable} {
		if got := counted(t, p.ingestURL, outcome); got != want {
			t.Errorf("herald_ingest_events_total{outcome=%q} = %d, want %d", outcome, got, want)
		}
	}

	deadline := time.Now().Add(60 * time.Second)
	missing := p.receiver.missing(accepted)
	for len(missing) > 0 && time.Now().Before(deadline) {
		p.receiver.wait(time.Until(deadline))
		missing = p.receiver.missing(accepted)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d accepted events never reached the webhook, such as %s", len(missing), len(accepted), missing[0])
		t.Logf("the services' warnings since the broker was back:\n%s", p.warnings.since(up))
	}
	got, dupes := p.receiver.counts()
	t.Logf("webhook received %d events (%d of them answered 503 yet written), %d duplicate deliveries",
		got, got-(len(accepted)-len(missing)), dupes)
}

// broker is a Kafka broker of the test's own, run by deploy/kafka/broker.sh
// on free ports, so that the test can stop and start it.
type broker struct {
	t    *testing.T
	addr string
	env  []string
}

func startBroker(t *testing.T) *broker {
	t.Helper()
	port, ctrl := freePort(t), freePort(t)
	b := &broker{t: t, addr: "127.0.0.1:" + port, env: append(os.Environ(),
		"HERALD_KAFKA_PORT="+port, "HERALD_KAFKA_CONTROLLER_PORT="+ctrl, "HERALD_KAFKA_HEAP=512m")}
	t.Cleanup(func() {
		b.run("stop")
		if !t.Failed() {
			// The broker's log stays only when it may explain a failure.
			_ = os.RemoveAll(filepath.Join(kafkaCache(), "run-"+port))
		}
	})
	b.run("start")
	return b
}

// stop stops the broker and keeps its data.
func (b *broker) stop() { b.run("stop", "HERALD_KAFKA_KEEP_DATA=1") }

// resume starts the broker again on the data stop kept.
func (b *broker) resume() { b.run("start", "HERALD_KAFKA_KEEP_DATA=1") }

func (b *broker) run(command string, env ...string) {
	b.t.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "..", "deploy", "kafka", "broker.sh"), command)
	cmd.Env = append(b.env, env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("broker.sh %s: %v\n%s", command, err, out)
	}
}

// kafkaCache is where broker.sh keeps its jars and run state.
func kafkaCache() string {
	if dir := os.Getenv("HERALD_KAFKA_CACHE"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", ".cache", "kafka")
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// pipeline is ingest, the rule evaluator and the webhook sender, in this
// process, on one broker, with a tenant whose one rule sends every Balance
// update to the receiver.
type pipeline struct {
	ingestURL string
	receiver  *receiver
	// warnings keeps what the services warned of, told only when events
	// went missing: while the broker is away every client warns at length.
	warnings *logBuffer
}

func startPipeline(t *testing.T, brokerAddr string) *pipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	prefix := kafkatest.Prefix(t)
	warnings := &logBuffer{}
	log := slog.New(slog.NewTextHandler(warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))
	common := func(name string) service.Config {
		return service.Config{
			Kafka:    kafka.Config{Brokers: []string{brokerAddr}, TopicPrefix: prefix, Partitions: 3, ReplicationFactor: 1, CreateTopics: true},
			Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Minute, Timeout: time.Minute},
			HTTPAddr: "127.0.0.1:0",
			Logger:   log.With("service", name),
		}
	}

	in, ingestURL := serveIngest(ctx, t, ingest.Config{Config: common("ingest"), MaxBatch: 10, ProduceTimeout: produceTimeout})
	rcv := newReceiver(t)
	store := in.Base().Config
	put := func(kind, id string, spec any) {
		t.Helper()
		doc, err := configstore.NewDocument("acme", kind, id, spec)
		if err == nil {
			_, err = store.Put(ctx, doc, 0)
		}
		if err != nil {
			t.Fatalf("seed %s %s: %v", kind, id, err)
		}
	}
	put(configstore.KindDestination, "dst_receiver", configstore.Destination{Type: "webhook", Name: "receiver", Webhook: &configstore.WebhookDestination{
		URL: rcv.srv.URL + "/hook", Secrets: []configstore.SigningSecret{{Secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="}},
	}})
	put(configstore.KindRule, "rul_every_update", configstore.Rule{
		Name: "every update", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When:         "new.remaining < old.remaining",
		Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		Destinations: []string{"dst_receiver"},
	})

	ev, err := ruleevaluator.New(ctx, ruleevaluator.Config{
		Config: common("rule-evaluator"), Group: prefix + "rule-evaluator", TransactionalID: prefix + "rule-evaluator-0",
		SessionTimeout: 6 * time.Second, MaxBatch: 500,
	})
	if err != nil {
		t.Fatalf("ruleevaluator.New: %v", err)
	}
	servicetest.Run(t, ev)

	sc := webhooksender.Config{
		Config: common("webhook-sender"), Group: prefix + "webhook-sender", Timeout: 5 * time.Second,
		Egress: egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"},
	}
	if err := envconfig.Defaults(&sc.Delivery); err != nil {
		t.Fatal(err)
	}
	sc.Delivery.RetrySchedule = "0s,1s,2s,5s,10s"
	sc.Delivery.CommitInterval = 200 * time.Millisecond
	snd, err := webhooksender.New(ctx, sc)
	if err != nil {
		t.Fatalf("webhooksender.New: %v", err)
	}
	servicetest.Run(t, snd)
	return &pipeline{ingestURL: ingestURL, receiver: rcv, warnings: warnings}
}

// logBuffer keeps log lines with the time each was written.
type logBuffer struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	at   time.Time
	text string
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, logLine{time.Now(), string(p)})
	return len(p), nil
}

// since returns the lines written since t, the first 200 of them.
func (b *logBuffer) since(t time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out strings.Builder
	n := 0
	for _, l := range b.lines {
		if l.at.After(t) && n < 200 {
			out.WriteString(l.text)
			n++
		}
	}
	return out.String()
}

// waitReady polls ingest's /readyz until it says ready (or not ready), or
// fails the test after within.
func (p *pipeline) waitReady(t *testing.T, ready bool, within time.Duration) {
	t.Helper()
	want := map[bool]int{true: http.StatusOK, false: http.StatusServiceUnavailable}[ready]
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.ingestURL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/readyz did not answer %d within %v; last answer: %s", want, within, last)
}

// receiver is the webhook endpoint: it counts deliveries by event id.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	seen    map[string]int
	changed chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{seen: map[string]int{}, changed: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Event.ID == "" {
			t.Errorf("webhook body without an event id (%v)", err)
		}
		r.mu.Lock()
		r.seen[body.Event.ID]++
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait returns when a delivery arrives or after at most d.
func (r *receiver) wait(d time.Duration) {
	select {
	case <-r.changed:
	case <-time.After(d):
	}
}

// missing returns the ids not received yet.
func (r *receiver) missing(ids []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range ids {
		if r.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// counts returns the events received and the deliveries beyond the first
// of each.
func (r *receiver) counts() (events, dupes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.seen {
		events++
		dupes += n - 1
	}
	return events, dupes
}

// load posts Balance updates, one event each, at a steady rate.
type load struct {
	url     string
	client  *http.Client
	started time.Time
	took    time.Duration // from the first post to the last answer
	mu      sync.Mutex
	res     []result
}

// result is what one POST /v1/events got.
type result struct {
	id         string
	sent       time.Time
	took       time.Duration
	status     int
	retryAfter string
	body       string
	err        error
}

func newLoad(url string) *load {
	return &load{url: url, started: time.Now(), client: &http.Client{
		Timeout:   clientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 1024},
	}}
}

// run posts rate events a second until stop is closed, for d and rate*d
// events at most, then waits for every answer.
func (l *load) run(rate int, d time.Duration, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	end := l.started.Add(d)
	var wg sync.WaitGroup
loop:
	for i := 0; i < rate*int(d/time.Second) && time.Now().Before(end); i++ {
		select {
		case <-tick.C:
		case <-stop:
			break loop
		}
		wg.Go(func() { l.post(i) })
	}
	wg.Wait()
	l.took = time.Since(l.started)
	l.client.CloseIdleConnections()
}

func (l *load) post(i int) {
	r := result{id: fmt.Sprintf("evt-%05d", i), sent: time.Now()}
	defer func() {
		r.took = time.Since(r.sent)
		l.mu.Lock()
		l.res = append(l.res, r)
		l.mu.Unlock()
	}()
	img := func(remaining int) map[string]any {
		return map[string]any{"id": fmt.Sprintf("bal-%d", i%50), "accountId": fmt.Sprintf("acct-%d", i%50), "unit": "MB", "total": 1000, "used": 1000 - remaining, "remaining": remaining}
	}
	body, _ := json.Marshal(map[string]any{
		"eventId": r.id, "entityType": "Balance", "entityId": fmt.Sprintf("bal-%d", i%50), "operation": "UPDATE",
		"accountId": fmt.Sprintf("acct-%d", i%50), "old": img(600), "new": img(590),
	})
	req, err := http.NewRequest(http.MethodPost, l.url+"/v1/events", strings.NewReader(string(body)))
	if err != nil {
		r.err = err
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	resp, err := l.client.Do(req)
	if err != nil {
		r.err = err
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r.status, r.retryAfter, r.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

func (l *load) results() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}
