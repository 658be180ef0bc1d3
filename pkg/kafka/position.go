package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	err = p.wait(ctx, func(next map[int32]int64) bool {
		caught := true
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 && next[o.Partition] < o.Offset {
				caught = false
			}
		})
		return caught
	})
	if err == nil {
		p.mu.Lock()
		p.caughtUp = true
		p.mu.Unlock()
	}
	return err
}

// CaughtUp reports whether WaitCaughtUp has succeeded once.
func (p *Position) CaughtUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caughtUp
}
