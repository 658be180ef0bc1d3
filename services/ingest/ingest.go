// Package ingest is Herald's HTTP front door for upstream systems: it takes
// entity-change events as JSON, checks them against the entity type's
// registered Avro schema, and writes them to the events topic. An event is
// acknowledged (202) only after the broker has acknowledged the record.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldhq/herald/pkg/apidoc"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/telemetry"
)

// Config is the ingest service's configuration.
type Config struct {
	service.Config
	// MaxBatch bounds the events in one POST /v1/events:batch.
	MaxBatch int `env:"INGEST_MAX_BATCH" envDefault:"500"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxBatch < 1 {
		return errors.New("HERALD_INGEST_MAX_BATCH: must be at least 1")
	}
	return c.Config.Validate()
}

// Ingest accepts events over HTTP and produces them to Kafka.
type Ingest struct {
	base     *service.Base
	producer *kgo.Client
	keys     httpapi.KeyLookup
	maxBatch int
	// events counts events by outcome: accepted, refused.
	events metric.Int64Counter
}

// New connects the ingest service.
func New(ctx context.Context, c Config) (*Ingest, error) {
	base, err := service.Start(ctx, "ingest", c.Config)
	if err != nil {
		return nil, err
	}
	producer, err := base.NewClient(kgo.DefaultProduceTopic(base.Topics.Events))
	if err != nil {
		base.Close()
		return nil, err
	}
	base.Health.AddCheck("kafka", func() error { return producer.Ping(context.Background()) })
	return &Ingest{
		base: base, producer: producer, keys: httpapi.StoreKeys(base.Config), maxBatch: c.MaxBatch,
		events: telemetry.Counter(base.Metrics.Meter("herald/ingest"), "herald.ingest.events", "Events posted, by outcome (accepted, refused)."),
	}, nil
}

// Base returns what the service shares with every other.
func (in *Ingest) Base() *service.Base { return in.base }

// Routes adds the routes RouteTable lists and GET /openapi.json.
func (in *Ingest) Routes(mux *http.ServeMux) {
	for pattern, h := range in.RouteTable() {
		mux.Handle(pattern, h)
	}
	apidoc.Register(mux)
}

// RouteTable returns ingest's API routes by pattern: POST /v1/events and
// POST /v1/events:batch, both for keys with events:write.
func (in *Ingest) RouteTable() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/events":       httpapi.RequireKey(in.keys, httpapi.ScopeEventsWrite, in.postEvent),
		"POST /v1/events:batch": httpapi.RequireKey(in.keys, httpapi.ScopeEventsWrite, in.postBatch),
	}
}

// Run follows the configuration (API keys) until ctx ends.
func (in *Ingest) Run(ctx context.Context) error { return in.base.FollowConfig(ctx) }

// Close flushes and releases the clients.
func (in *Ingest) Close() {
	in.producer.Close()
	in.base.Close()
}

// Run runs the ingest service until ctx ends.
func Run(ctx context.Context, c Config) error {
	in, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, in)
}

func (in *Ingest) postEvent(w http.ResponseWriter, r *http.Request) {
	var req event.Event
	if err := httpapi.DecodeJSON(w, r, &req); err != nil {
		httpapi.WriteError(w, r, in.base.Log, err)
		return
	}
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	rec, err := in.record(r.Context(), tenant, &req, "")
	if err != nil {
		in.count(r.Context(), "refused", 1)
		httpapi.WriteError(w, r, in.base.Log, err)
		return
	}
	if err := in.producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		httpapi.WriteError(w, r, in.base.Log, fmt.Errorf("produce event %s: %w", req.EventID, err))
		return
	}
	in.count(r.Context(), "accepted", 1)
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"eventId": req.EventID})
}

type batchRequest struct {
	// Events are decoded one by one, so that an error names its index.
	Events []json.RawMessage `json:"events"`
}

// postBatch checks every event before producing any: a batch with one bad
// event is refused whole, naming each bad field.
func (in *Ingest) postBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	if err := httpapi.DecodeJSON(w, r, &req); err != nil {
		httpapi.WriteError(w, r, in.base.Log, err)
		return
	}
	if len(req.Events) == 0 || len(req.Events) > in.maxBatch {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest,
			fmt.Sprintf("a batch holds 1 to %d events", in.maxBatch), httpapi.FieldError{Field: "events", Message: fmt.Sprintf("has %d events", len(req.Events))}))
		return
	}
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	recs := make([]*kgo.Record, len(req.Events))
	events := make([]event.Event, len(req.Events))
	var bad *httpapi.Problem
	for i, raw := range req.Events {
		prefix := fmt.Sprintf("events[%d].", i)
		rec, err := (*kgo.Record)(nil), httpapi.Unmarshal(raw, &events[i])
		if err != nil {
			err = prefixFields(err, prefix)
		} else {
			rec, err = in.record(r.Context(), tenant, &events[i], prefix)
		}
		var p *httpapi.Problem
		switch {
		case errors.As(err, &p) && p.Status < 500:
			if bad == nil {
				bad = httpapi.NewProblem(p.Status, "some events are not valid; none was accepted")
			}
			bad.Errors = append(bad.Errors, p.Errors...)
		case err != nil:
			httpapi.WriteError(w, r, in.base.Log, err)
			return
		}
		recs[i] = rec
	}
	if bad != nil {
		in.count(r.Context(), "refused", len(events))
		httpapi.WriteProblem(w, bad)
		return
	}
	if err := in.producer.ProduceSync(r.Context(), recs...).FirstErr(); err != nil {
		httpapi.WriteError(w, r, in.base.Log, fmt.Errorf("produce batch: %w", err))
		return
	}
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].EventID
	}
	in.count(r.Context(), "accepted", len(ids))
	httpapi.WriteJSON(w, http.StatusAccepted, map[string][]string{"eventIds": ids})
}

// prefixFields puts prefix before every field a problem names; a problem
// that names none is given one naming the item itself.
func prefixFields(err error, prefix string) error {
	var p *httpapi.Problem
	if !errors.As(err, &p) {
		return err
	}
	if len(p.Errors) == 0 {
		p.Errors = []httpapi.FieldError{{Field: strings.TrimSuffix(prefix, "."), Message: p.Detail}}
		return p
	}
	for i := range p.Errors {
		p.Errors[i].Field = prefix + p.Errors[i].Field
	}
	return p
}

func (in *Ingest) count(ctx context.Context, outcome string, n int) {
	in.events.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
}
