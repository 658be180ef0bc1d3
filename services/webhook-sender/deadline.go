package webhooksender

import (
	"context"
	"reflect"
	"sync"
	"time"
)

// deadlineGrain is how long one shared deadline context is handed out:
// an attempt may run up to this much longer than the timeout.
const deadlineGrain = 10 * time.Millisecond

// deadlines bounds attempts by the timeout. Attempts that begin within
// the same grain of time from the same parent share one context: a
// context of its own per attempt costs a timer, and a registration with
// the parent under the parent's lock that every concurrent attempt
// contends for, while a shared one costs them once a grain. The shared
// context ends timeout after its grain ends, so that no attempt is cut
// short, and nothing cancels it early; its timer releases it at its
// deadline.
//
// Only a parent that comes twice in a row is shared: the engine's
// attempts without a tracer all have one parent, and with a tracer each
// has its own, whose context is then the attempt's own and is released
// when the attempt ends.
type deadlines struct {
	timeout time.Duration

	mu     sync.Mutex
	last   context.Context // the parent of the attempt before
	parent context.Context // the parent of shared
	shared context.Context
	stop   context.CancelFunc // shared's
	until  time.Time          // when shared stops being handed out
}

// bound returns a context that ends at least d.timeout after now, and the
// function that releases it once the attempt is over.
func (d *deadlines) bound(parent context.Context, now time.Time) (context.Context, context.CancelFunc) {
	if !reflect.TypeOf(parent).Comparable() {
		// It cannot be told from the next one.
		return context.WithTimeout(parent, d.timeout)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// parent's type is comparable, so comparing it with any other
	// context cannot panic.
	repeated := parent == d.last
	d.last = parent
	if !repeated {
		return context.WithTimeout(parent, d.timeout)
	}
	if d.shared == nil || parent != d.parent || !now.Before(d.until) {
		d.parent, d.until = parent, now.Add(deadlineGrain)
		d.shared, d.stop = context.WithDeadline(parent, d.until.Add(d.timeout))
	}
	return d.shared, func() {}
}

// close ends the context being handed out.
func (d *deadlines) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stop != nil {
		d.stop()
	}
	d.last, d.parent, d.shared, d.stop = nil, nil, nil, nil
}
