package ingest_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/ingest"
)

// unitProduceTimeout is ingest's produce timeout in these tests.
const unitProduceTimeout = 500 * time.Millisecond

// startOn runs ingest with tenant acme on the kfake cluster c, which the
// test controls, and returns it with its address.
func startOn(t *testing.T, c *kfake.Cluster) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cfg := ingest.Config{
		Config: service.Config{
			Kafka:    kafka.Config{Brokers: c.ListenAddrs(), TopicPrefix: "t.", Partitions: 1, ReplicationFactor: -1, CreateTopics: true},
			Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Second, Timeout: time.Minute},
			HTTPAddr: "127.0.0.1:0",
			Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
		},
		MaxBatch: maxBatch, ProduceTimeout: unitProduceTimeout,
	}
	_, url := serveIngest(ctx, t, cfg)
	topic := cfg.Kafka.Topics().Events
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consumer.Close)
	src, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return &stack{t: t, url: url, topic: topic, codec: havro.NewRegistry(src, time.Minute), consumer: consumer, admin: kadm.NewClient(consumer)}
}

// serveIngest runs ingest with cfg and tenant acme, whose key acmeKey may
// write events, until the test ends; it returns ingest and the address of
// its routes, /readyz and /metrics.
func serveIngest(ctx context.Context, t *testing.T, cfg ingest.Config) (*ingest.Ingest, string) {
	t.Helper()
	in, err := ingest.New(ctx, cfg)
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	servicetest.Run(t, in)
	seedTenant(ctx, t, in.Base().Config, "acme", acmeKey, httpapi.ScopeEventsWrite)
	mux := http.NewServeMux()
	in.Base().Health.Register(mux)
	mux.Handle("GET /metrics", in.Base().Metrics.Handler())
	in.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return in, srv.URL
}

// withEventID returns balanceUpdate with eventId id.
func withEventID(id string) string {
	return strings.Replace(balanceUpdate, "{", `{"eventId":"`+id+`",`, 1)
}

// TestUnansweredProduceIs503InTimeAndNotWrittenLater has the broker take a
// produce request and never answer it. Ingest must answer 503 with a
// Retry-After at its produce timeout, count the event as unavailable, and
// not write the event later, when the broker answers again: the client was
// told to send it again.
func TestUnansweredProduceIs503InTimeAndNotWrittenLater(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := startOn(t, c)
	if r := s.post("/v1/events", acmeKey, withEventID("evt-before")); r.Status != http.StatusAccepted {
		t.Fatalf("before the fault: %d %s, want 202", r.Status, r.Detail)
	}

	var hang atomic.Bool
	hang.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if !hang.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		return nil, nil, true // taken, never answered
	})
	start := time.Now()
	r := s.post("/v1/events", acmeKey, withEventID("evt-lost"))
	took := time.Since(start)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("while the broker does not answer: %d %s, want 503", r.Status, r.Detail)
	}
	if took < unitProduceTimeout || took > unitProduceTimeout+time.Second {
		t.Errorf("503 after %v, want it at the produce timeout %v", took, unitProduceTimeout)
	}
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1 (the produce timeout, in whole seconds)", got)
	}
	if got := counted(t, s.url, "unavailable"); got != 1 {
		t.Errorf("events counted unavailable: %d, want 1", got)
	}

	hang.Store(false)
	deadline := time.Now().Add(waitFor)
	for {
		r := s.post("/v1/events", acmeKey, withEventID("evt-after"))
		if r.Status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the fault: still %d %s", r.Status, r.Detail)
		}
	}
	// Ingest answers 202 only once the record is written, so the topic
	// holds by now whatever it will ever hold of the events before.
	var ids []string
	for _, rec := range s.next(int(s.produced())) {
		ids = append(ids, s.decode(rec)["eventId"].(string))
	}
	if len(ids) == 0 || ids[0] != "evt-before" || ids[len(ids)-1] != "evt-after" || strings.Contains(strings.Join(ids, ","), "evt-lost") {
		t.Errorf("events topic holds %v, want evt-before and evt-after (perhaps more than once), never evt-lost", ids)
	}
}

// TestNotReadyAnd503WithoutBroker stops the broker: /readyz must say not
// ready, naming Kafka, and every event must be answered 503 in time.
func TestNotReadyAnd503WithoutBroker(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	s := startOn(t, c)
	if status, body := s.get("/readyz"); status != http.StatusOK {
		t.Fatalf("with the broker up, /readyz: %d %s", status, body)
	}
	c.Close()
	if status, body := s.get("/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, `"kafka"`) {
		t.Errorf("without the broker, /readyz: %d %s, want 503 naming kafka", status, body)
	}
	for i := range 3 {
		start := time.Now()
		r := s.post("/v1/events", acmeKey, balanceUpdate)
		if took := time.Since(start); r.Status != http.StatusServiceUnavailable || took > unitProduceTimeout+time.Second {
			t.Errorf("without the broker, event %d: %d after %v, want 503 at the produce timeout %v", i, r.Status, took, unitProduceTimeout)
		}
	}
}

// get returns the status and body of GET path.
func (s *stack) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// counted returns the count of events with outcome from the /metrics of
// ingest at url.
func counted(t *testing.T, url, outcome string) int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := "herald_ingest_events_total{"
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, `outcome="`+outcome+`"`) {
			continue
		}
		n, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		return int(n)
	}
	return 0
}
