package delivery

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldhq/herald/pkg/telemetry"
)

// deliveryMetrics are the engine's figures per channel: attempts by
// outcome and how long they took, and deliveries dead-lettered by class.
type deliveryMetrics struct {
	channel  attribute.KeyValue
	attempts metric.Int64Counter
	duration metric.Float64Histogram
	dead     metric.Int64Counter
	// outcomes holds each outcome's attribute set with the channel, made
	// once: a set is sorted and hashed as it is made, which on every
	// attempt cost more than counting it. Its options are slices made
	// once too, for a variadic call would otherwise allocate one each time.
	outcomes map[string]outcomeOptions
}

// outcomeOptions are an outcome's attribute set as the counter's and the
// histogram's options.
type outcomeOptions struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

func newOutcomeOptions(set attribute.Set) outcomeOptions {
	o := metric.WithAttributeSet(set)
	return outcomeOptions{add: []metric.AddOption{o}, record: []metric.RecordOption{o}}
}

func newDeliveryMetrics(m metric.Meter, channel string) deliveryMetrics {
	// From a fast webhook (milliseconds) to a channel's timeout (tens of
	// seconds).
	buckets := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	h, err := m.Float64Histogram("herald.delivery.attempt.duration",
		metric.WithDescription("How long delivery attempts took, by channel and outcome."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(buckets...))
	if err != nil {
		panic(fmt.Sprintf("metric herald.delivery.attempt.duration: %v", err))
	}
	ch := attribute.String("channel", channel)
	outcomes := map[string]outcomeOptions{}
	for _, o := range []string{OutcomeDelivered, OutcomeRetry, OutcomePermanent, OutcomeGone, OutcomeSkipped} {
		outcomes[o] = newOutcomeOptions(attribute.NewSet(ch, attribute.String("outcome", o)))
	}
	return deliveryMetrics{
		channel:  ch,
		outcomes: outcomes,
		attempts: telemetry.Counter(m, "herald.delivery.attempts",
			"Delivery attempts, by channel and outcome (delivered, retry, permanent, gone)."),
		duration: h,
		dead: telemetry.Counter(m, "herald.delivery.dead_letters",
			"Deliveries written to the channel's dead-letter topic, by channel and error class."),
	}
}

// attempted counts one attempt with its outcome and duration.
func (d deliveryMetrics) attempted(outcome string, took time.Duration) {
	opts, ok := d.outcomes[outcome]
	if !ok {
		opts = newOutcomeOptions(attribute.NewSet(d.channel, attribute.String("outcome", outcome)))
	}
	d.attempts.Add(context.Background(), 1, opts.add...)
	d.duration.Record(context.Background(), took.Seconds(), opts.record...)
}

// deadLettered counts one delivery dead-lettered with its error class.
func (d deliveryMetrics) deadLettered(class string) {
	d.dead.Add(context.Background(), 1, metric.WithAttributes(d.channel, attribute.String("class", class)))
}
