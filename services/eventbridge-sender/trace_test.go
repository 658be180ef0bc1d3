package eventbridgesender_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/delivery"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
	"github.com/heraldhq/herald/services/eventbridge-sender/internal/eventbridgetest"
)

// TestEachCallHasASpanLinkedToItsEntries pins the EventBridge call's span:
// one per PutEvents call, linked to the attempt span of every entry it
// carries, so each notification's trace leads to the call that put it.
func TestEachCallHasASpanLinkedToItsEntries(t *testing.T) {
	srv := eventbridgetest.New(nil, eventbridgetest.Latency(20*time.Millisecond))
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	eb := newChannel(t, eventbridgesender.Options{Linger: 50 * time.Millisecond, Calls: 1, Tracer: tp.Tracer("test")})
	dest := bus(busARN, nil)

	attempts := map[trace.TraceID]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			ctx, span := tp.Tracer("test").Start(t.Context(), "deliver eventbridge")
			defer span.End()
			mu.Lock()
			attempts[span.SpanContext().TraceID()] = true
			mu.Unlock()
			if _, err := eb.Deliver(ctx, &delivery.Delivery{Notification: note(fmt.Sprintf("acct-%d", i), i), DestinationID: "bus", Destination: dest, Attempt: 1}); err != nil {
				t.Errorf("deliver %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	linked := map[trace.TraceID]bool{}
	calls := 0
	for _, s := range rec.Ended() {
		if s.Name() != "eventbridge PutEvents" {
			continue
		}
		calls++
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("call span kind %v, want client", s.SpanKind())
		}
		for _, l := range s.Links() {
			linked[l.SpanContext.TraceID()] = true
		}
	}
	if calls != len(srv.Calls()) {
		t.Errorf("%d call spans for %d calls", calls, len(srv.Calls()))
	}
	for id := range attempts {
		if !linked[id] {
			t.Errorf("attempt trace %s is linked to no call span", id)
		}
	}
}
