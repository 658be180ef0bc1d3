package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// Handler handles one consumed record. The engine calls it for each record
// of a partition in offset order; it returns once the record's deliveries
// are under way, not done.
type Handler func(ctx context.Context, r *kgo.Record) error

// Middleware wraps a Handler with cross-cutting behaviour.
type Middleware func(Handler) Handler

// Chain wraps h in mws, the first outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// UnreadableError is a record that no retry can make readable: bad bytes,
// or a handler that panicked on it.
type UnreadableError struct {
	Reason string
	Err    error
}

func (e *UnreadableError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *UnreadableError) Unwrap() error { return e.Err }

// Recover turns a panic in the handler into an UnreadableError, so that
// one bad record cannot stop its partition.
func Recover(log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) (err error) {
			defer func() {
				if v := recover(); v != nil {
					log.Error("record handler panicked", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
						"panic", v, "stack", string(debug.Stack()))
					err = &UnreadableError{Reason: "handler panicked", Err: fmt.Errorf("%v", v)}
				}
			}()
			return next(ctx, r)
		}
	}
}

// Unreadable marks Avro wire-format errors as UnreadableError.
func Unreadable() Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) error {
			err := next(ctx, r)
			if err == nil {
				return nil
			}
			var we *avro.WireError
			if errors.As(err, &we) {
				return &UnreadableError{Reason: "cannot decode", Err: err}
			}
			return err
		}
	}
}

// RetryTransient retries the handler while it fails with an error that is
// neither an UnreadableError nor the end of ctx (the registry being
// unreachable, say): the world's fault, which passes. It waits from first
// up to a minute between tries, holding held meanwhile so that /readyz
// says why, and calls retried for each retry.
func RetryTransient(log *slog.Logger, first time.Duration, held *httpapi.Condition, retried func(ctx context.Context)) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) error {
			wait := first
			release := func() {}
			defer func() { release() }()
			for {
				err := next(ctx, r)
				if err == nil || ctx.Err() != nil {
					return err
				}
				var ue *UnreadableError
				if errors.As(err, &ue) {
					return err
				}
				release()
				release = held.Hold(err)
				retried(ctx)
				log.Warn("record handler failed; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err, "in", wait)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
				wait = min(2*wait, time.Minute)
			}
		}
	}
}

// DeadLetter hands records that fail with an UnreadableError to dead, and
// reports them handled. Other errors pass through; context.Canceled is never
// dead-lettered.
func DeadLetter(dead func(ctx context.Context, r *kgo.Record, err error) error) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, r *kgo.Record) error {
			err := next(ctx, r)
			if err == nil {
				return nil
			}
			var ue *UnreadableError
			if !errors.As(err, &ue) || errors.Is(err, context.Canceled) {
				return err
			}
			return dead(ctx, r, err)
		}
	}
}
