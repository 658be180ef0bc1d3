package ruleevaluator

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/kafka"
)

// traced records the span of one event's evaluation, begun at began, as
// a child of the trace context the event's record carries, with the
// rules that fired and their count. It returns the context the event's
// notifications are written in, so that each carries a traceparent of
// this trace; nil when tracing is off.
func (e *Evaluator) traced(r *kgo.Record, began time.Time, v *judge.Verdict, err error) context.Context {
	if e.tracer == nil {
		return nil
	}
	// Not the poll's context: a record's context bounds its write, which
	// comes after the evaluation's errgroup has ended.
	_, span := e.tracer.Start(kafka.RecordContext(context.Background(), r), "evaluate",
		trace.WithTimestamp(began), trace.WithSpanKind(trace.SpanKindConsumer))
	span.SetAttributes(
		attribute.String("messaging.destination.name", r.Topic),
		attribute.Int("messaging.destination.partition.id", int(r.Partition)),
		attribute.Int64("messaging.kafka.offset", r.Offset),
	)
	if v != nil {
		rules := make([]string, len(v.Notifications))
		for i, n := range v.Notifications {
			rules[i] = n.Notification.RuleID
		}
		span.SetAttributes(
			attribute.String("herald.tenant", v.Tenant),
			attribute.String("herald.event", v.Event.ID),
			attribute.StringSlice("herald.rules", rules),
			attribute.Int("herald.matches", len(v.Notifications)),
			attribute.Int("herald.rule_failures", len(v.Failures)),
		)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return trace.ContextWithSpan(context.Background(), span)
}
