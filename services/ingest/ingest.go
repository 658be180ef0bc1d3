// Package ingest is Herald's HTTP front door for upstream systems: it takes
// entity-change events as JSON, checks them against the entity type's
// registered Avro schema, and writes them to the events topic. An event is
// acknowledged (202) only after the broker has acknowledged the record.
//
// A write the broker does not acknowledge within the produce timeout
// (HERALD_INGEST_PRODUCE_TIMEOUT), because it is unreachable or slow, is
// answered 503 with a Retry-After, and /readyz says not ready until the
// broker answers again; the producer reconnects on its own.
package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	// ProduceTimeout bounds the wait for the broker to acknowledge an
	// event (or a batch); past it the request is answered 503. Zero means
	// defaultProduceTimeout.
	ProduceTimeout time.Duration `env:"INGEST_PRODUCE_TIMEOUT" envDefault:"5s"`
}

// defaultProduceTimeout is ProduceTimeout for a Config built in code
// without one, as the devstack and tests do.
const defaultProduceTimeout = 5 * time.Second

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxBatch < 1 {
		return errors.New("HERALD_INGEST_MAX_BATCH: must be at least 1")
	}
	if c.ProduceTimeout < 0 {
		return errors.New("HERALD_INGEST_PRODUCE_TIMEOUT: must not be negative")
	}
	return c.Config.Validate()
}

// Ingest accepts events over HTTP and produces them to Kafka.
type Ingest struct {
	base     *service.Base
	producer *kgo.Client
	keys     httpapi.KeyLookup
	maxBatch int
	// produceTimeout bounds a produce and the Kafka readiness check.
	produceTimeout time.Duration
	// events counts events by outcome: accepted, refused, unavailable.
	events metric.Int64Counter
	// outcomes are the counter's attributes by outcome, made once rather
	// than on every request.
	outcomes map[string]metric.AddOption
}

// New connects the ingest service.
func New(ctx context.Context, c Config) (*Ingest, error) {
	base, err := service.Start(ctx, "ingest", c.Config)
	if err != nil {
		return nil, err
	}
	timeout := cmp.Or(c.ProduceTimeout, defaultProduceTimeout)
	producer, err := base.NewClient(
		kgo.DefaultProduceTopic(base.Topics.Events),
		// An idempotent producer keeps a record it has sent until the
		// broker answers, and every record behind it on the partition: a
		// broker that went away mid-request would have them all written
		// on its return, long after their requests were answered 503.
		// This lets the deadline fail them (see produce).
		kgo.AllowIdempotentProduceCancellation(),
	)
	if err != nil {
		base.Close()
		return nil, err
	}
	base.Health.AddCheck("kafka", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return producer.Ping(ctx)
	})
	return &Ingest{
		base: base, producer: producer, keys: httpapi.StoreKeys(base.Config), maxBatch: c.MaxBatch, produceTimeout: timeout,
		events:   telemetry.Counter(base.Metrics.Meter("herald/ingest"), "herald.ingest.events", "Events posted, by outcome (accepted, refused, unavailable)."),
		outcomes: outcomeOptions("accepted", "refused", "unavailable"),
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
	if err := in.produce(r.Context(), rec); err != nil {
		in.produceFailed(w, r, 1, fmt.Errorf("produce event %s: %w", req.EventID, err))
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
	if err := in.produce(r.Context(), recs...); err != nil {
		in.produceFailed(w, r, len(recs), fmt.Errorf("produce batch: %w", err))
		return
	}
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].EventID
	}
	in.count(r.Context(), "accepted", len(ids))
	httpapi.WriteJSON(w, http.StatusAccepted, map[string][]string{"eventIds": ids})
}

// produce writes recs and waits for the broker to acknowledge every one,
// at most the produce timeout.
//
// The deadline is on the records' context and on the wait itself. kgo
// looks at a record's deadline (as at RecordDeliveryTimeout) only when it
// drains a partition or fails to refresh metadata, no oftener than
// MetadataMinAge while the broker is away, so ProduceSync alone would
// answer seconds late. A record past its deadline is failed, not written,
// the next time kgo looks at it. One the broker received before it went
// away, or while its answer was lost, may be written all the same: that
// costs a duplicate, not a loss, for the client retries the 503 with the
// same eventId and the notification ids derived from it let downstream
// drop the second.
//
// A client that hangs up does not cancel the write: cancelling would fail
// the records other requests have buffered behind it on the partition.
func (in *Ingest) produce(ctx context.Context, recs ...*kgo.Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.produceTimeout)
	defer cancel()
	acked := make(chan error, len(recs))
	for _, r := range recs {
		in.producer.Produce(ctx, r, func(_ *kgo.Record, err error) { acked <- err })
	}
	for range recs {
		select {
		case err := <-acked:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// produceFailed answers a produce of n events that failed: 503 with a
// Retry-After when the broker could not be reached in time, which is no
// fault of the client's nor of ingest's, else a logged 500.
func (in *Ingest) produceFailed(w http.ResponseWriter, r *http.Request, n int, err error) {
	if !brokerUnavailable(err) {
		httpapi.WriteError(w, r, in.base.Log, err)
		return
	}
	in.count(r.Context(), "unavailable", n)
	in.base.Log.Debug("events not accepted: Kafka unavailable", "events", n, "err", err)
	// A broker that did not answer within the produce timeout is not
	// likely to answer sooner than that.
	httpapi.WriteUnavailable(w, in.produceTimeout, "the event store is unavailable; retry with the same eventId")
}

// brokerUnavailable reports whether a produce failed because the broker
// could not be reached or did not answer in time, rather than because it
// refused the records.
func brokerUnavailable(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, kgo.ErrRecordTimeout) ||
		errors.Is(err, kgo.ErrRecordRetries) ||
		errors.Is(err, kgo.ErrClientClosed) ||
		errors.As(err, &netErr) ||
		kerr.IsRetriable(err)
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

// outcomeOptions returns the counter's attribute option of each outcome.
func outcomeOptions(outcomes ...string) map[string]metric.AddOption {
	m := make(map[string]metric.AddOption, len(outcomes))
	for _, o := range outcomes {
		m[o] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", o)))
	}
	return m
}

func (in *Ingest) count(ctx context.Context, outcome string, n int) {
	in.events.Add(ctx, int64(n), in.outcomes[outcome])
}
