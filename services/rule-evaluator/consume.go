package ruleevaluator

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
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
func (s *session) consume(ctx context.Context) error {
	e := s.e
	wait := minBackoff
	// Held while transactions fail in a row: /readyz then says why.
	release := func() {}
	defer func() { release() }()
	for {
		sess := s.sess.Load()
		// Polls end at least every timerTick, and at the next timer's due
		// time, so that a timer fires on time while no event comes; while
		// timers are due, a poll takes only what is there.
		poll := timerTick
		if next, ok := s.timers.next(); ok {
			poll = max(min(poll, time.UnixMilli(next).Sub(e.now())), 0)
		}
		pctx, cancel := context.WithTimeout(ctx, poll)
		fetches := sess.PollRecords(pctx, e.maxBatch)
		cancel()
		fetches = e.gather(ctx, sess, fetches)
		if ctx.Err() != nil {
			return nil
		}
		e.lag.Fetched(fetches)
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				e.base.Log.Warn("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		// The timers of partitions just assigned are loaded before their
		// events are judged or anything fires.
		err := s.timers.loadAssigned(ctx)
		var due []partitionDue
		if err == nil {
			due = s.timers.due(e.now(), maxFire)
			if fetches.NumRecords() == 0 && len(due) == 0 {
				continue
			}
			err = s.transact(ctx, sess, fetches, due)
		}
		release()
		// After views that were behind, the next transaction waits for
		// them before judging, so that a stream of configuration changes
		// cannot keep aborting it.
		s.catchUpFirst = errors.Is(err, errViewsBehind)
		if s.catchUpFirst {
			e.metrics.aborts.Add(ctx, 1)
		}
		if err == nil || s.catchUpFirst {
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
			s.timers.reset()
			if err := s.renewSession(); err != nil {
				return err
			}
		}
	}
}

// gather waits up to gatherWait for more events once a poll has returned
// some. The client holds one fetch per broker and asks for the next only
// when a poll takes the one it holds: the first event to reach the broker
// during a transaction is fetched at once, and those after it only once the
// next poll has taken it. Waiting that one round trip puts them in the
// transaction about to begin instead of the one after it.
func (e *Evaluator) gather(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) kgo.Fetches {
	n := fetches.NumRecords()
	if n == 0 || n >= e.maxBatch || e.gatherWait <= 0 {
		return fetches
	}
	gctx, cancel := context.WithTimeout(ctx, e.gatherWait)
	defer cancel()
	return append(fetches, sess.PollRecords(gctx, e.maxBatch-n)...)
}

// errViewsBehind marks a transaction judged with views of the rules or
// subscriptions that did not yet hold everything written before its
// events were accepted.
var errViewsBehind = errors.New("rules or subscriptions changed while the events were judged")

// catchUp is a check that the views of the configuration and of the
// subscriptions hold every record written before it began.
type catchUp struct {
	results chan catchUpResult
	// stop ends the check, once the transaction no longer needs it.
	stop context.CancelFunc
}

type catchUpResult struct {
	held bool
	err  error
}

// catchUp notes how far the views have applied their topics, then asks for
// the topics' end offsets and waits for the views to reach them, both in
// the background.
func (e *Evaluator) catchUp(ctx context.Context) catchUp {
	ctx, stop := context.WithCancel(ctx)
	c := catchUp{results: make(chan catchUpResult, 2), stop: stop}
	for _, view := range []interface {
		Mark() kafka.Mark
		CatchUp(context.Context) (kafka.Mark, error)
	}{e.base.Config, e.subs} {
		mark := view.Mark()
		go func() {
			ends, err := view.CatchUp(ctx)
			c.results <- catchUpResult{held: err == nil && mark.Covers(ends), err: err}
		}()
	}
	return c
}

// held waits for the check and reports whether the views already held,
// when it began, everything it waited for.
func (c catchUp) held() (bool, error) {
	held := true
	var err error
	for range 2 {
		r := <-c.results
		held = held && r.held
		if err == nil {
			err = r.err
		}
	}
	return held, err
}

// errSessionBroken marks a transaction that could not begin: the session's
// producer is in a state no retry leaves. The broker fenced its epoch,
// most often by aborting a transaction that outlived the transaction
// timeout while the broker was away, and under transactions v2 (KIP-890)
// that is final for the producer.
var errSessionBroken = errors.New("transactional producer can no longer transact")

// The bounds of the wait between aborted transactions: short enough at
// the top that the evaluator is back at work within seconds of the broker
// or registry coming back.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// timerTick is the longest a poll waits for events: timers fire within it
// of their due time.
const timerTick = 250 * time.Millisecond

// maxFire bounds the timers one transaction fires. It is larger than a
// transaction's events, for a timer costs less to judge than an event
// (it is read once, with its neighbours, and judged by one rule), and the
// timers that came due while a replica was away must fire within a second
// of its return.
const maxFire = 5000

func (s *session) transact(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, due []partitionDue) error {
	e := s.e
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w: %w", errSessionBroken, err)
	}
	// A rule, subscription or tenant deletion written before these events
	// were accepted applies to them. The check of that runs while they
	// are judged and written, against the views as they stand now; if it
	// finds the views were behind, the transaction is aborted and judged
	// again once they have caught up.
	caughtUp := e.catchUp(ctx)
	defer caughtUp.stop()
	var held bool
	var err error
	if s.catchUpFirst {
		_, err = caughtUp.held()
		held = true
	}
	// A rule still waiting to compile aborts the transaction: the session
	// rewinds, and these events are judged once it has compiled.
	if err == nil {
		err = e.loadPending(ctx)
	}
	var w written
	if err == nil {
		// Written as each partition is judged; the commit waits for all.
		cl := sess.Client()
		var produced kgo.FirstErrPromise
		w, err = s.judgeAll(ctx, fetches, due, func(recs []*kgo.Record) {
			for _, r := range recs {
				cl.Produce(ctx, r, produced.Promise())
			}
		})
		if err == nil {
			err = produced.Err()
		}
	}
	if err == nil && !held {
		held, err = caughtUp.held()
		if err == nil && !held {
			err = errViewsBehind
		}
	}
	action := kgo.TryCommit
	if err != nil {
		action = kgo.TryAbort
	}
	var committed bool
	var endErr error
	if fetches.NumRecords() > 0 {
		committed, endErr = sess.End(ctx, action)
	} else {
		// Timers alone, no offsets to commit: the client ends the
		// transaction itself. The session would hold the next
		// transaction back for half a second after such a commit, as
		// it does on a broker without KIP-447 (it cannot tell from a
		// commit without offsets), which would bound firing to a
		// transaction every 500 ms.
		if endErr = sess.Client().EndTransaction(ctx, action); endErr == nil {
			committed = action == kgo.TryCommit
		}
	}
	switch {
	case err != nil:
		return err
	case endErr != nil:
		return fmt.Errorf("end transaction: %w", endErr)
	case !committed:
		return errors.New("transaction not committed (group rebalanced)")
	}
	s.timers.apply(w.timers)
	dead, notes := 0, 0
	for _, r := range w.records {
		switch r.Topic {
		case e.base.Topics.EventsDLQ:
			dead++
			e.metrics.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("class", header(r, headerErrorClass))))
		case e.base.Topics.Notifications:
			notes++
		}
	}
	for _, lag := range w.lags {
		e.metrics.timerLag.Record(ctx, lag.Seconds())
	}
	e.metrics.timersFired.Add(ctx, int64(len(w.lags)))
	e.metrics.events.Add(ctx, int64(fetches.NumRecords()))
	e.metrics.notifications.Add(ctx, int64(notes))
	return nil
}

// written is what one transaction writes: its records, and among them the
// timer records with what they do to the tables once committed.
type written struct {
	records []*kgo.Record
	timers  []timerWrite
	// lags are how late each timer fired.
	lags []time.Duration
}

// judgeAll judges a poll's events and the timers due. The work is cut
// into pieces judged in parallel (the timers due in a partition, and runs
// of up to judgeRun of its events), so that every core judges even when a
// poll holds one partition's events; each partition's records are then put
// in order: the timers due fire first (they came due before these events
// were judged), then the events, so that an event that sets a timer again
// outlives the tombstone of the one fired. The notifications of one
// partition keep the order of its events. Each partition's records are
// handed to produce as soon as its last piece is judged, so that they are
// written while the other partitions are judged.
func (s *session) judgeAll(ctx context.Context, fetches kgo.Fetches, due []partitionDue, produce func([]*kgo.Record)) (written, error) {
	e := s.e
	byPartition := map[int32]*judging{}
	var parts []*judging
	get := func(p int32) *judging {
		if pt, ok := byPartition[p]; ok {
			return pt
		}
		pt := &judging{partition: p}
		byPartition[p] = pt
		parts = append(parts, pt)
		return pt
	}
	// A poll may hold more than one fetch of a partition, in order.
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		pt := get(p.Partition)
		pt.events = append(pt.events, p.Records...)
	})
	for _, d := range due {
		get(d.partition).due = d.timers
	}
	// The pieces: each partition's timers due, and its events in runs.
	type piece struct {
		pt         *judging
		from, to   int
		fireTimers bool
	}
	var pieces []piece
	for _, pt := range parts {
		pt.outs = make([]eventOutcome, len(pt.events))
		if len(pt.due) > 0 {
			pieces = append(pieces, piece{pt: pt, fireTimers: true})
			pt.left.Add(1)
		}
		for from := 0; from < len(pt.events); from += judgeRun {
			pieces = append(pieces, piece{pt: pt, from: from, to: min(from+judgeRun, len(pt.events))})
			pt.left.Add(1)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, pc := range pieces {
		g.Go(func() error {
			pt := pc.pt
			if pc.fireTimers {
				recs, writes, fired, lags, err := s.fireDue(ctx, partitionDue{pt.partition, pt.due})
				if err != nil {
					return err
				}
				pt.fired = written{records: recs, timers: writes, lags: lags}
				pt.firedIDs = fired
			} else {
				for i := pc.from; i < pc.to; i++ {
					recs, ch, err := e.evaluate(ctx, pt.events[i])
					if err != nil {
						return err
					}
					pt.outs[i] = eventOutcome{records: recs, timers: ch}
				}
			}
			if pt.left.Add(-1) == 0 {
				pt.assemble(s)
				produce(pt.w.records)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return written{}, err
	}
	var all written
	for _, pt := range parts {
		all.records = append(all.records, pt.w.records...)
		all.timers = append(all.timers, pt.w.timers...)
		all.lags = append(all.lags, pt.w.lags...)
	}
	return all, nil
}

// judgeRun is how many of a partition's events one piece of judging takes:
// enough that handing it out costs little next to judging it.
const judgeRun = 64

// judging is one partition's share of a transaction.
type judging struct {
	partition int32
	events    []*kgo.Record
	due       []dueTimer
	// left counts the pieces not judged yet; the last to finish puts the
	// partition's records in order.
	left atomic.Int32
	// fired is what firing the timers due wrote, firedIDs which they were.
	fired    written
	firedIDs map[timerID]bool
	outs     []eventOutcome
	// w is the partition's records and timer writes, in order.
	w written
}

// eventOutcome is what judging one event yielded.
type eventOutcome struct {
	records []*kgo.Record
	timers  eventTimers
}

// assemble puts the partition's records in order: the timers fired, then
// each event's records, then the timer records the events wrote.
func (pt *judging) assemble(s *session) {
	w := pt.fired
	var changes []eventTimers
	for _, o := range pt.outs {
		w.records = append(w.records, o.records...)
		if len(o.timers.ops) > 0 {
			changes = append(changes, o.timers)
		}
	}
	w.timers = append(w.timers, s.timerChanges(pt.partition, changes, pt.firedIDs)...)
	for _, t := range w.timers {
		if t.rec != nil {
			w.records = append(w.records, t.rec)
		}
	}
	pt.w = w
}

// evaluate returns the records one event yields: a notification per rule
// that fires, and a dead letter when the event, or a rule on it, failed in
// a way no retry mends. An error is the world's fault: the transaction
// aborts and the event is judged again.
func (e *Evaluator) evaluate(ctx context.Context, r *kgo.Record) ([]*kgo.Record, eventTimers, error) {
	began := time.Now()
	v, err := e.judge.Event(ctx, r.Value)
	e.metrics.latency.Record(ctx, time.Since(began).Seconds())
	tctx := e.traced(r, began, v, err)
	if err != nil {
		var re *judge.RecordError
		if errors.As(err, &re) {
			e.base.Log.Warn("event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", re.Error())
			return []*kgo.Record{e.deadLetter(r, classUnreadable, re.Error())}, eventTimers{}, nil
		}
		return nil, eventTimers{}, fmt.Errorf("judge event at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	timers := eventTimers{tenant: v.Tenant, event: r.Value, ops: v.Timers}
	if len(v.Notifications) == 0 && len(v.Failures) == 0 {
		return nil, timers, nil
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
		return out, timers, nil
	}
	// The event's other rules have fired; the event also goes to the
	// dead-letter topic, so that it can be replayed once the failing rules
	// are mended (notification ids are derived, so a replay repeats ids).
	return append(out, e.deadLetter(r, classRuleFailed, e.failureReasons(ctx, v, r))), timers, nil
}

// failureReasons counts and logs the rules that failed on r and says why,
// for its dead letter.
func (e *Evaluator) failureReasons(ctx context.Context, v *judge.Verdict, r *kgo.Record) string {
	reasons := make([]string, len(v.Failures))
	for i, f := range v.Failures {
		e.metrics.ruleFailures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", f.Reason)))
		e.base.Log.Warn("rule failed", "tenant", v.Tenant, "rule", f.RuleID, "reason", f.Reason, "err", f.Err,
			"event", v.Event.ID, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
		reasons[i] = fmt.Sprintf("rule %s: %s: %v", f.RuleID, f.Reason, f.Err)
	}
	return strings.Join(reasons, "; ")
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
