package eventbridgesender

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/delivery"
)

// Client backoff after call-level throttling: it starts at minBackoff and
// doubles while calls keep being throttled, up to maxBackoff.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// idleAfter is how long a batcher without entries lives on; a new entry
// for its client starts another.
const idleAfter = 5 * time.Minute

// batcher gathers the entries for one client (region and credentials)
// into PutEvents calls. A call takes up to MaxEntries entries and
// MaxBatchBytes; it is sent once full, or Linger after its first entry,
// as soon as one of the client's Calls slots is free. While every slot is
// busy the call keeps gathering, so a busy bus fills its calls and a quiet
// one waits no longer than Linger.
type batcher struct {
	client *eventbridge.Client
	opts   Options
	in     chan *entry
	// done is closed when the batcher stops reading in.
	done  chan struct{}
	slots chan struct{}
	calls sync.WaitGroup
	// retire is asked, when the batcher has been idle, whether it may
	// stop; it removes the batcher from its owner when it says yes.
	retire func(*batcher) bool

	mu          sync.Mutex
	backoff     time.Duration
	pausedUntil time.Time
}

func newBatcher(client *eventbridge.Client, o Options, retire func(*batcher) bool) *batcher {
	return &batcher{
		client: client, opts: o, retire: retire,
		in: make(chan *entry), done: make(chan struct{}), slots: make(chan struct{}, o.Calls),
	}
}

// run gathers and sends calls until life ends or the batcher retires,
// then waits for its calls under way.
func (b *batcher) run(life context.Context) {
	defer b.calls.Wait()
	var (
		batch []*entry
		size  int
		due   bool // the first entry has lingered long enough
	)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	idle := time.NewTimer(idleAfter)
	defer linger.Stop()
	defer idle.Stop()
	send := func() {
		b.send(life, batch)
		linger.Stop()
		batch, size, due = nil, 0, false
	}
	for {
		in := b.in
		if len(batch) == MaxEntries {
			in = nil
		}
		var slot chan<- struct{}
		if len(batch) > 0 && (due || len(batch) == MaxEntries) {
			slot = b.slots
		}
		select {
		case e := <-in:
			idle.Reset(idleAfter)
			if len(batch) > 0 && size+e.size > MaxBatchBytes {
				// e starts the next call: this one goes first.
				select {
				case b.slots <- struct{}{}:
					send()
				case <-life.Done():
					fail(append(batch, e), life.Err())
					close(b.done)
					return
				}
			}
			batch = append(batch, e)
			size += e.size
			if len(batch) == 1 {
				linger.Reset(b.opts.Linger)
			}
		case <-linger.C:
			due = true
		case slot <- struct{}{}:
			send()
		case <-idle.C:
			if len(batch) == 0 && b.retire(b) {
				close(b.done)
				return
			}
			idle.Reset(idleAfter)
		case <-life.Done():
			fail(batch, life.Err())
			close(b.done)
			return
		}
	}
}

// send makes the call for batch on a slot already taken.
func (b *batcher) send(life context.Context, batch []*entry) {
	b.calls.Go(func() {
		defer func() { <-b.slots }()
		b.put(life, batch)
	})
}

// put makes one PutEvents call for batch and hands each entry its result.
// Only entries are retried, by the engine, never the call: an entry that
// succeeded is not sent again.
func (b *batcher) put(life context.Context, batch []*entry) {
	if err := b.waitPause(life); err != nil {
		fail(batch, err)
		return
	}
	ctx, cancel := context.WithTimeout(life, b.opts.Timeout)
	defer cancel()
	if b.opts.Tracer != nil {
		// One call carries entries of many traces: its span is a root of
		// its own, linked to each entry's attempt.
		links := make([]trace.Link, 0, len(batch))
		for _, e := range batch {
			if e.attempt.IsValid() {
				links = append(links, trace.Link{SpanContext: e.attempt})
			}
		}
		var span trace.Span
		ctx, span = b.opts.Tracer.Start(ctx, "eventbridge PutEvents", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithNewRoot(), trace.WithLinks(links...), trace.WithAttributes(attribute.Int("herald.entries", len(batch))))
		defer span.End()
	}
	in := &eventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(batch))}
	for i, e := range batch {
		in.Entries[i] = e.put
	}
	if b.opts.Observe != nil {
		b.opts.Observe(len(batch))
	}
	out, err := b.client.PutEvents(ctx, in)
	if err != nil {
		var backoff time.Duration
		if isThrottle(err) {
			backoff = b.throttled()
		}
		r := callOutcome(err, backoff)
		var ae *delivery.AttemptError
		var ce *credentialsError
		if len(batch) > 1 && errors.As(r.err, &ae) && ae.Kind == delivery.Permanent && !errors.As(err, &ce) {
			// A call refused for one entry's sake, such as a bus that
			// does not exist among others that do, must not fail the
			// others: each entry is tried alone. (Credentials are the
			// same for every entry of the call.)
			for _, e := range batch {
				b.put(life, []*entry{e})
			}
			return
		}
		for _, e := range batch {
			e.result <- r
		}
		return
	}
	b.recovered()
	if len(out.Entries) != len(batch) {
		fail(batch, delivery.RetryError("protocol", fmt.Errorf("PutEvents answered %d results for %d entries", len(out.Entries), len(batch))))
		return
	}
	for i, e := range batch {
		e.result <- entryOutcome(out.Entries[i])
	}
}

// throttled backs the client off after a throttled call and returns how
// long.
func (b *batcher) throttled() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backoff = min(max(2*b.backoff, minBackoff), maxBackoff)
	// Jitter, so that the replicas of the sender do not come back as one.
	d := b.backoff/2 + rand.N(b.backoff/2+1)
	if until := time.Now().Add(d); until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
	return d
}

// recovered ends the backoff after a call that was not throttled.
func (b *batcher) recovered() {
	b.mu.Lock()
	b.backoff = 0
	b.mu.Unlock()
}

// waitPause waits out the client's backoff, if any.
func (b *batcher) waitPause(ctx context.Context) error {
	b.mu.Lock()
	wait := time.Until(b.pausedUntil)
	b.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fail hands each entry of batch err as its result.
func fail(batch []*entry, err error) {
	for _, e := range batch {
		e.result <- result{err: err}
	}
}
