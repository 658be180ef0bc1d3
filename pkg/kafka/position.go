package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Position is how far a view that follows a topic has applied it: the
// next offset of each partition, with waits for a record to be applied and
// for the view to catch up. The followed views of compacted topics
// (configuration, subscriptions) share it.
type Position struct {
	mu       sync.Mutex
	next     map[int32]int64
	changed  chan struct{} // closed on every advance, then replaced
	caughtUp bool
	// partitions of the followed topic, once listed: later end offsets
	// are asked for them alone, without the metadata round trip first.
	partitions []int32
}

// NewPosition returns the position of a view that has applied nothing.
func NewPosition() *Position {
	return &Position{next: map[int32]int64{}, changed: make(chan struct{})}
}

// Advance records that partition is applied up to next (exclusive) and
// wakes the waiters.
func (p *Position) Advance(partition int32, next int64) {
	p.mu.Lock()
	p.next[partition] = next
	p.broadcast()
	p.mu.Unlock()
}

// AdvanceFetches records every record of fetches as applied, waking the
// waiters once.
func (p *Position) AdvanceFetches(fetches kgo.Fetches) {
	p.mu.Lock()
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if n := len(ftp.Records); n > 0 {
			p.next[ftp.Partition] = ftp.Records[n-1].Offset + 1
		}
	})
	p.broadcast()
	p.mu.Unlock()
}

func (p *Position) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait blocks until done reports true, or ctx ends.
func (p *Position) wait(ctx context.Context, done func(next map[int32]int64) bool) error {
	for {
		p.mu.Lock()
		ok, ch := done(p.next), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// WaitApplied blocks until the record at partition and offset is applied.
func (p *Position) WaitApplied(ctx context.Context, partition int32, offset int64) error {
	return p.wait(ctx, func(next map[int32]int64) bool { return next[partition] > offset })
}

// WaitCaughtUp blocks until every record that was in topic when it was
// called is applied.
func (p *Position) WaitCaughtUp(ctx context.Context, cl *kgo.Client, topic string) error {
	_, err := p.CatchUp(ctx, cl, topic)
	return err
}

// CatchUp blocks until every record that was in topic when it was called
// is applied, and returns the end offsets it waited for.
func (p *Position) CatchUp(ctx context.Context, cl *kgo.Client, topic string) (Mark, error) {
	ends, err := p.endOffsets(ctx, cl, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := p.wait(ctx, func(next map[int32]int64) bool { return Mark(next).Covers(ends) }); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.caughtUp = true
	p.mu.Unlock()
	return ends, nil
}

// Mark is how far a view had applied each partition of its topic at one
// moment: the next offset of each.
type Mark map[int32]int64

// Mark returns how far the view has applied its topic now.
func (p *Position) Mark() Mark {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(Mark, len(p.next))
	for partition, next := range p.next {
		m[partition] = next
	}
	return m
}

// Covers reports whether a view at m had applied every record below ends.
func (m Mark) Covers(ends Mark) bool {
	for partition, end := range ends {
		if end > 0 && m[partition] < end {
			return false
		}
	}
	return true
}

// endOffsets returns the end offset of each partition of topic. The first
// call lists the topic's partitions; later calls ask the partitions'
// leaders alone, in one round trip, and list again when that fails.
func (p *Position) endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	p.mu.Lock()
	partitions := p.partitions
	p.mu.Unlock()
	if len(partitions) > 0 {
		req := kmsg.NewPtrListOffsetsRequest()
		t := kmsg.NewListOffsetsRequestTopic()
		t.Topic = topic
		for _, partition := range partitions {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = partition, -1 // the end
			t.Partitions = append(t.Partitions, rp)
		}
		req.Topics = append(req.Topics, t)
		ends := make(map[int32]int64, len(partitions))
		var failed error
		for _, shard := range cl.RequestSharded(ctx, req) {
			if shard.Err != nil {
				failed = shard.Err
				continue
			}
			for _, rt := range shard.Resp.(*kmsg.ListOffsetsResponse).Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						failed = err
						continue
					}
					ends[rp.Partition] = rp.Offset
				}
			}
		}
		if failed == nil && len(ends) == len(partitions) {
			return ends, nil
		}
	}
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, err
	}
	ends := map[int32]int64{}
	partitions = partitions[:0:0]
	listed.Each(func(o kadm.ListedOffset) {
		ends[o.Partition] = o.Offset
		partitions = append(partitions, o.Partition)
	})
	p.mu.Lock()
	p.partitions = partitions
	p.mu.Unlock()
	return ends, nil
}

// CaughtUp reports whether WaitCaughtUp has succeeded once.
func (p *Position) CaughtUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caughtUp
}
