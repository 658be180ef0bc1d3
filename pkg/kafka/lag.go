package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Lag is a consumer group member's own view of how far behind it is, per
// partition it reads: the high watermark its last fetch of the partition
// saw, less the offset after the last record it got. It is reported as
// the gauge herald.kafka.consumer.lag (records) with the attributes
// group, topic and partition. On a topic written in transactions the
// commit marker after the last record counts, so a member that is caught
// up reads 1 there, as Kafka's own tools do.
type Lag struct {
	group string
	mu    sync.Mutex
	lag   map[lagKey]int64
}

type lagKey struct {
	topic     string
	partition int32
}

// NewLag returns the lag of a member of group, reported through meter.
func NewLag(meter metric.Meter, group string) *Lag {
	l := &Lag{group: group, lag: map[lagKey]int64{}}
	_, err := meter.Int64ObservableGauge("herald.kafka.consumer.lag",
		metric.WithDescription("Records a consumer group member has yet to read, per partition: the partition's high watermark at its last fetch less the offset after the last record it read."),
		metric.WithUnit("{record}"),
		metric.WithInt64Callback(l.observe))
	if err != nil {
		panic("metric herald.kafka.consumer.lag: " + err.Error())
	}
	return l
}

// Fetched records the lag of each partition in fs that returned records.
func (l *Lag) Fetched(fs kgo.Fetches) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			l.lag[lagKey{p.Topic, p.Partition}] = max(0, p.HighWatermark-p.Records[n-1].Offset-1)
		}
	})
}

// Forget drops the partitions of m, which the member no longer reads.
func (l *Lag) Forget(m map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for topic, ids := range m {
		for _, id := range ids {
			delete(l.lag, lagKey{topic, id})
		}
	}
}

func (l *Lag) observe(_ context.Context, o metric.Int64Observer) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, v := range l.lag {
		o.Observe(v, metric.WithAttributes(
			attribute.String("group", l.group), attribute.String("topic", k.topic), attribute.Int("partition", int(k.partition))))
	}
	return nil
}
