package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/bench"
)

// kafkaLoop delivers the same notifications as the sender with nothing of
// Herald between Kafka and the sink: it reads them read-committed, POSTs
// the loop's signed body for each over conns connections (a key always on
// the same one, as keyed delivery keeps a key's order), writes an attempt
// record for each, and commits a partition's offsets only up to the
// notifications whose POST and attempt record are both done. Its rate is
// what Kafka leaves a sender with the sender's guarantees; over the bare
// loop, what Kafka costs. With no sink URL it posts nothing.
func kafkaLoop(ctx context.Context, o options, sinkURL string, body []byte) (bench.Span, int64, bench.Span, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, stop, err := notificationsOnBroker(ctx, o, log)
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	defer stop()
	group := b.Kafka.TopicPrefix + "kafka-loop"
	wait, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	span, done, whole, err := bench.Consume(wait, kadm.NewClient(b.Client), group, b.Kafka.Topics().Notifications, int64(o.n), "",
		func(ctx context.Context) error {
			return deliverFromKafka(ctx, b, group, sinkURL, body, o.conns)
		})
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("not every notification delivered and committed within 5 minutes")
	}
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, fmt.Errorf("kafka loop: %w", err)
	}
	return span, done, whole, nil
}

// pending is a notification read and not yet done.
type pending struct {
	r    *kgo.Record
	done bool
}

// inOrder holds a partition's notifications in offset order, so that its
// commit never passes one that is not done.
type inOrder struct {
	mu    sync.Mutex
	queue []*pending
}

// finish marks p done and returns the last record of the run of done
// notifications at the front, now committable, or nil.
func (q *inOrder) finish(p *pending) *kgo.Record {
	q.mu.Lock()
	defer q.mu.Unlock()
	p.done = true
	var last *kgo.Record
	for len(q.queue) > 0 && q.queue[0].done {
		last = q.queue[0].r
		q.queue = q.queue[1:]
	}
	return last
}

func deliverFromKafka(ctx context.Context, b *bench.Broker, group, sinkURL string, body []byte, conns int) error {
	topics := b.Kafka.Topics()
	cl, err := kgo.NewClient(append(slices.Clone(b.Opts),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics.Notifications),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AutoCommitMarks(), kgo.AutoCommitInterval(200*time.Millisecond),
		// As the sender: nothing waits on the attempt records but the
		// commit.
		kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	type job struct {
		p *pending
		q *inOrder
	}
	errs := make(chan error, conns)
	queues := make([]chan job, conns)
	var workers sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan job, 256)
		workers.Go(func() {
			for j := range queues[i] {
				id := string(j.p.r.Key)
				if sinkURL != "" {
					if err := signedPost(ctx, hc, sinkURL, body, id); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
				}
				attempt := fmt.Appendf(nil, `{"notificationKey":%q,"attempt":1,"status":204,"at":%q}`, id, time.Now().Format(time.RFC3339Nano))
				cl.Produce(ctx, &kgo.Record{Topic: topics.Deliveries, Key: j.p.r.Key, Value: attempt}, func(_ *kgo.Record, err error) {
					if err != nil {
						return
					}
					if last := j.q.finish(j.p); last != nil {
						cl.MarkCommitRecords(last)
					}
				})
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		workers.Wait()
	}()
	partitions := map[int32]*inOrder{}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		select {
		case err := <-errs:
			return err
		default:
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			q := partitions[p.Partition]
			if q == nil {
				q = &inOrder{}
				partitions[p.Partition] = q
			}
			jobs := make([]job, len(p.Records))
			q.mu.Lock()
			for i, r := range p.Records {
				jobs[i] = job{p: &pending{r: r}, q: q}
				q.queue = append(q.queue, jobs[i].p)
			}
			q.mu.Unlock()
			for _, j := range jobs {
				h := fnv.New32a()
				_, _ = h.Write(j.p.r.Key)
				select {
				case queues[h.Sum32()%uint32(len(queues))] <- j:
				case <-ctx.Done():
					return
				}
			}
		})
	}
}
