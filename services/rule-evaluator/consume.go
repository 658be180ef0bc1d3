package ruleevaluator

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/kafka"
)

// consume runs one transaction per poll until ctx ends. A transaction that
// fails is the world's fault (a record's own fault is dead-lettered inside
// the transaction): it is aborted, and the same events are judged again
// after a wait that doubles with each failure in a row, up to maxBackoff.
func (e *Evaluator) consume(ctx context.Context) error {
	wait := minBackoff
	// Held while transactions fail in a row: /readyz then says why.
	release := func() {}
	defer func() { release() }()
	for {
		sess := e.sess.Load()
		fetches := sess.PollRecords(ctx, e.maxBatch)
		if ctx.Err() != nil {
			return nil
		}
		e.lag.Fetched(fetches)
		fetches.EachError(func(t string, p int32, err error) {
			e.base.Log.Warn("fetch", "topic", t, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		err := e.transact(ctx, sess, fetches)
		release()
		if err == nil {
			wait = minBackoff
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		release = e.stalled.Hold(err)
		// The session rewinds to the committed offsets after an abort,
		// so the same events are evaluated again.
		e.metrics.aborts.Add(ctx, 1)
		e.base.Log.Warn("transaction aborted; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
		if errors.Is(err, errSessionBroken) {
			if err := e.renewSession(); err != nil {
				return err
			}
		}
	}
}

// errSessionBroken marks a transaction that could not begin: the session's
// producer is in a state no retry leaves. The broker fenced its epoch,
// most often by aborting a transaction that outlived the transaction
// timeout while the broker was away, and under transactions v2 (KIP-890)
// that is final for the producer.
var errSessionBroken = errors.New("transactional producer can no longer transact")

// renewSession closes the session and opens a new one with the same
// transactional id: the new producer epoch fences the old, whatever the
// old left open is aborted, and the group hands the partitions back from
// their committed offsets, so nothing is lost or committed twice.
func (e *Evaluator) renewSession() error {
	e.base.Log.Error("starting a new transactional session", "err", errSessionBroken)
	old := e.sess.Load()
	sess, err := kgo.NewGroupTransactSession(e.sessOpts...)
	if err != nil {
		return fmt.Errorf("transactional session: %w", err)
	}
	e.sess.Store(sess)
	old.Close()
	e.metrics.sessions.Add(context.Background(), 1)
	return nil
}

// The bounds of the wait between aborted transactions: short enough at
// the top that the evaluator is back at work within seconds of the broker
// or registry coming back.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

func (e *Evaluator) transact(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) error {
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w: %w", errSessionBroken, err)
	}
	// A subscription written before these events were accepted applies
	// to them: one ListOffsets per transaction buys that, asked for while
	// the configuration is waited for.
	subs := make(chan error, 1)
	go func() { subs <- e.subs.WaitCaughtUp(ctx) }()
	// A rule, or the deletion of a tenant, written before these events
	// were accepted applies to them.
	err := e.base.Config.WaitCaughtUp(ctx)
	// A rule still waiting to compile aborts the transaction: the session
	// rewinds, and these events are judged once it has compiled.
	if err == nil {
		err = e.loadPending(ctx)
	}
	if serr := <-subs; err == nil {
		err = serr
	}
	var out []*kgo.Record
	if err == nil {
		out, err = e.evaluateAll(ctx, fetches)
	}
	if err == nil && len(out) > 0 {
		err = sess.Client().ProduceSync(ctx, out...).FirstErr()
	}
	action := kgo.TryCommit
	if err != nil {
		action = kgo.TryAbort
	}
	committed, endErr := sess.End(ctx, action)
	switch {
	case err != nil:
		return err
	case endErr != nil:
		return fmt.Errorf("end transaction: %w", endErr)
	case !committed:
		return errors.New("transaction not committed (group rebalanced)")
	}
	dead := 0
	for _, r := range out {
		if r.Topic == e.base.Topics.EventsDLQ {
			dead++
			e.metrics.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("class", header(r, headerErrorClass))))
		}
	}
	e.metrics.events.Add(ctx, int64(fetches.NumRecords()))
	e.metrics.notifications.Add(ctx, int64(len(out)-dead))
	return nil
}

// evaluateAll evaluates a poll's partitions in parallel, each in order,
// and returns their records partition after partition, so that the
// notifications of one partition keep the order of its events.
func (e *Evaluator) evaluateAll(ctx context.Context, fetches kgo.Fetches) ([]*kgo.Record, error) {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(p kgo.FetchTopicPartition) { parts = append(parts, p) })
	outs := make([][]*kgo.Record, len(parts))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, p := range parts {
		g.Go(func() error {
			for _, r := range p.Records {
				recs, err := e.evaluate(ctx, r)
				if err != nil {
					return err
				}
				outs[i] = append(outs[i], recs...)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(outs...), nil
}

// evaluate returns the records one event yields: a notification per rule
// that fires, and a dead letter when the event, or a rule on it, failed in
// a way no retry mends. An error is the world's fault: the transaction
// aborts and the event is judged again.
func (e *Evaluator) evaluate(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	began := time.Now()
	v, err := e.judge.Event(ctx, r.Value)
	e.metrics.latency.Record(ctx, time.Since(began).Seconds())
	tctx := e.traced(r, began, v, err)
	var re *judge.RecordError
	if errors.As(err, &re) {
		e.base.Log.Warn("event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", re.Error())
		return []*kgo.Record{e.deadLetter(r, classUnreadable, re.Error())}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("judge event at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	out := make([]*kgo.Record, 0, len(v.Notifications)+1)
	// Traced, each notification's write carries its own traceparent;
	// otherwise the event's trace headers, if any, are passed on as they
	// are (shared: nothing writes to them).
	var hdr []kgo.RecordHeader
	if tctx == nil {
		hdr = kafka.TraceHeaders(r.Headers)
	}
	for _, n := range v.Notifications {
		out = append(out, &kgo.Record{Topic: e.base.Topics.Notifications, Key: n.Key, Value: n.Value, Headers: hdr, Context: tctx})
	}
	if len(v.Failures) == 0 {
		return out, nil
	}
	// The event's other rules have fired; the event also goes to the
	// dead-letter topic, so that it can be replayed once the failing rules
	// are mended (notification ids are derived, so a replay repeats ids).
	reasons := make([]string, len(v.Failures))
	for i, f := range v.Failures {
		e.metrics.ruleFailures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", f.Reason)))
		e.base.Log.Warn("rule failed on an event", "tenant", v.Tenant, "rule", f.RuleID, "reason", f.Reason, "err", f.Err,
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		reasons[i] = fmt.Sprintf("rule %s: %s: %v", f.RuleID, f.Reason, f.Err)
	}
	return append(out, e.deadLetter(r, classRuleFailed, strings.Join(reasons, "; "))), nil
}

// Headers of the events dead-letter topic, as on the senders' dead-letter
// topics, and its error classes.
const (
	headerErrorClass = "herald-error-class"
	headerError      = "herald-error"
	headerOrigin     = "herald-origin"

	classUnreadable = "unreadable"
	classRuleFailed = "rule_failed"
)

// deadLetter copies an event to the dead-letter topic with headers saying
// why and where it came from.
func (e *Evaluator) deadLetter(r *kgo.Record, class, reason string) *kgo.Record {
	return &kgo.Record{
		Topic: e.base.Topics.EventsDLQ,
		Key:   r.Key,
		Value: r.Value,
		Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: headerErrorClass, Value: []byte(class)},
			kgo.RecordHeader{Key: headerError, Value: []byte(reason)},
			kgo.RecordHeader{Key: headerOrigin, Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)},
		),
	}
}

// header returns the value of r's last header called key.
func header(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}
