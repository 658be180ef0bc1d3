package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/ingest"
)

// The API keys every stack is seeded with.
const (
	acmeKey       = "hk_acme_writer"
	globexKey     = "hk_globex_writer"
	acmeReaderKey = "hk_acme_reader" // config:read only, no events:write
)

const maxBatch = 10

// waitFor bounds every wait for something to happen.
const waitFor = 10 * time.Second

// stack is one ingest service running in-process against its own kfake
// cluster and fake schema registry, with tenants acme and globex seeded.
type stack struct {
	t        *testing.T
	url      string
	topic    string // the events topic
	codec    *havro.Registry
	consumer *kgo.Client
	admin    *kadm.Client
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()

	cfg := ingest.Config{Config: servicetest.Fakes(t, 3), MaxBatch: maxBatch}
	in, err := ingest.New(ctx, cfg)
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	servicetest.Run(t, in)
	store := in.Base().Config
	seedTenant(ctx, t, store, "acme", acmeKey, httpapi.ScopeEventsWrite, httpapi.ScopeConfigRead)
	seedTenant(ctx, t, store, "globex", globexKey, httpapi.ScopeEventsWrite)
	seedKey(ctx, t, store, "acme", acmeReaderKey, httpapi.ScopeConfigRead)

	mux := http.NewServeMux()
	in.Routes(mux)
	mux.Handle("GET /metrics", in.Base().Metrics.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	topic := cfg.Kafka.Topics().Events
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Kafka.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	t.Cleanup(consumer.Close)
	src, err := sr.NewClient(sr.URLs(cfg.Registry.URL))
	if err != nil {
		t.Fatalf("registry client: %v", err)
	}
	return &stack{
		t: t, url: srv.URL, topic: topic,
		codec:    havro.NewRegistry(src, time.Minute),
		consumer: consumer, admin: kadm.NewClient(consumer),
	}
}

func seedTenant(ctx context.Context, t *testing.T, store *configstore.Store, tenant, key string, scopes ...string) {
	t.Helper()
	doc, err := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: tenant})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, doc, 0); err != nil {
		t.Fatalf("seed tenant %s: %v", tenant, err)
	}
	seedKey(ctx, t, store, tenant, key, scopes...)
}

func seedKey(ctx context.Context, t *testing.T, store *configstore.Store, tenant, key string, scopes ...string) {
	t.Helper()
	hash := configstore.HashAPIKey(key)
	doc, err := configstore.NewDocument(tenant, configstore.KindAPIKey, "key_"+hash[:12],
		configstore.APIKey{Name: key, Hash: hash, Prefix: key[:7], Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, doc, 0); err != nil {
		t.Fatalf("seed key %s: %v", key, err)
	}
}

// reply is what ingest answers: the accepted ids, or a problem.
type reply struct {
	Status      int
	ContentType string
	EventID     string               `json:"eventId"`
	EventIDs    []string             `json:"eventIds"`
	Detail      string               `json:"detail"`
	Errors      []httpapi.FieldError `json:"errors"`
	Header      http.Header          `json:"-"`
}

// fields returns the field paths a problem names.
func (r reply) fields() []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, e.Field)
	}
	return out
}

// post sends body to path with key as the bearer API key (none when empty).
func (s *stack) post(path, key, body string) reply {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.t.Context(), http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	r := reply{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		s.t.Fatalf("POST %s: %d with an unreadable body: %v", path, resp.StatusCode, err)
	}
	return r
}

// produced returns how many records the events topic holds. Ingest answers
// only after the broker acked, so no wait is needed before asking.
func (s *stack) produced() int64 {
	s.t.Helper()
	ends, err := s.admin.ListEndOffsets(s.t.Context(), s.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		s.t.Fatalf("end offsets of %s: %v", s.topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// next returns the next n records of the events topic, failing the test if
// they do not arrive in time.
func (s *stack) next(n int) []*kgo.Record {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), waitFor)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fetches := s.consumer.PollRecords(ctx, n-len(recs))
		if ctx.Err() != nil {
			s.t.Fatalf("got %d of %d records from %s before the deadline", len(recs), n, s.topic)
		}
		fetches.EachError(func(t string, p int32, err error) { s.t.Fatalf("fetch %s/%d: %v", t, p, err) })
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// decode reads a record's value with its writer's schema.
func (s *stack) decode(r *kgo.Record) map[string]any {
	s.t.Helper()
	var v any
	if _, err := s.codec.Decode(s.t.Context(), r.Value, &v); err != nil {
		s.t.Fatalf("decode record %s: %v", r.Key, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		s.t.Fatalf("record %s decodes to %T, not a record", r.Key, v)
	}
	return m
}
