package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/telemetry"
)

// The W3C trace context headers a record carries.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// publishTracing is the producing half of kotel's tracer: a "publish" span
// per record written in a traced context, whose traceparent goes in the
// record's headers. Records written outside a trace (the configuration, the
// attempt log's own writes) start none, and consuming starts none either:
// each consumer continues the trace where it handles a record
// (RecordContext), so that replaying a compacted topic makes no root spans.
type publishTracing struct{ t *kotel.Tracer }

var (
	_ kgo.HookProduceRecordBuffered   = publishTracing{}
	_ kgo.HookProduceRecordUnbuffered = publishTracing{}
)

func newPublishTracing(tp trace.TracerProvider, clientID string) publishTracing {
	return publishTracing{kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(telemetry.Propagator()), kotel.ClientID(clientID))}
}

func (p publishTracing) OnProduceRecordBuffered(r *kgo.Record) {
	if r.Context == nil || !trace.SpanContextFromContext(r.Context).IsValid() {
		return
	}
	p.t.OnProduceRecordBuffered(r)
}

func (p publishTracing) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if r.Context == nil {
		return
	}
	// Ends the publish span, or does nothing for an untraced record.
	p.t.OnProduceRecordUnbuffered(r, err)
}

// TraceHeaders returns the trace context headers among hs, or nil when
// there are none (without allocating).
func TraceHeaders(hs []kgo.RecordHeader) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range hs {
		if h.Key == HeaderTraceparent || h.Key == HeaderTracestate {
			out = append(out, h)
		}
	}
	return out
}

// RecordContext returns ctx carrying the remote span context of r's
// traceparent header, or ctx itself when r has none.
func RecordContext(ctx context.Context, r *kgo.Record) context.Context {
	return HeadersContext(ctx, r.Headers)
}

// HeadersContext returns ctx carrying the remote span context of the
// traceparent among hs, or ctx itself when there is none.
func HeadersContext(ctx context.Context, hs []kgo.RecordHeader) context.Context {
	for _, h := range hs {
		if h.Key == HeaderTraceparent {
			return telemetry.Propagator().Extract(ctx, headerCarrier(hs))
		}
	}
	return ctx
}

// headerCarrier reads trace context from record headers.
type headerCarrier []kgo.RecordHeader

func (c headerCarrier) Get(key string) string {
	for i := len(c) - 1; i >= 0; i-- {
		if c[i].Key == key {
			return string(c[i].Value)
		}
	}
	return ""
}

func (headerCarrier) Set(string, string) {}

func (c headerCarrier) Keys() []string {
	out := make([]string, len(c))
	for i, h := range c {
		out[i] = h.Key
	}
	return out
}
