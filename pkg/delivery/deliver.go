package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
)

// job is one notification's delivery to one destination.
type job struct {
	x        *tracked // the record it came from
	n        *notification.Notification
	payloads *payloads // n rendered, shared with the record's other jobs
	key      []byte
	value    []byte // the notification's Avro record, for hand-offs
	dest     string
	lane     string // keyed: the (key, destination) lane; unordered: ""
	attempts int    // made so far
	due      time.Time
	origin   Origin
	parked   bool // read from the retry topic as a parked keyed delivery
	heldAt   time.Time
	// trace is the record's trace context headers, kept on its retry and
	// dead-letter records; nil when it has none.
	trace []kgo.RecordHeader
	// rendered holds the renderings when this is the first of its
	// record's jobs (payloads then points here), so that a notification
	// with one destination takes no allocation of its own for them.
	rendered payloads
	// delivery is each attempt's input to the channel, and attempt its
	// record, made anew for every attempt in the same place: the record
	// is encoded before the next attempt begins.
	delivery Delivery
	attempt  Attempt
}

// handleNotification starts a delivery per destination of this channel.
func (e *Engine) handleNotification(ctx context.Context, r *kgo.Record) error {
	n, err := e.decode(ctx, r.Value)
	if err != nil {
		return fmt.Errorf("decode notification at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	p := livePartition(ctx)
	if p == nil {
		return ctx.Err()
	}
	x := p.current // the record the handler is on
	tr := kafka.TraceHeaders(r.Headers)
	var pl *payloads // shared by the record's jobs
	for _, dest := range n.Destinations {
		d, _, ok := e.dests.Destination(n.TenantID, dest)
		if ok && d.Type != e.channel {
			continue // another channel's
		}
		j := &job{x: x, n: n, key: r.Key, value: r.Value, dest: dest, origin: Origin{r.Topic, r.Partition, r.Offset}, trace: tr}
		if pl == nil {
			pl = &j.rendered
		}
		j.payloads = pl
		x.hold()
		if n.Ordered {
			j.lane = laneKey(r.Key, dest)
			p.push(j)
		} else {
			p.spawn(func() { e.process(p, j, nil) })
		}
	}
	return nil
}

// handleRetry starts the delivery a retry-topic entry holds.
func (e *Engine) handleRetry(ctx context.Context, r *kgo.Record) error {
	en, err := ParseEntry(r)
	if err != nil {
		return &UnreadableError{Reason: "bad retry headers", Err: err}
	}
	n, err := e.decode(ctx, r.Value)
	if err != nil {
		return fmt.Errorf("decode retry entry at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	p := livePartition(ctx)
	if p == nil {
		return ctx.Err()
	}
	x := p.current // the record the handler is on
	x.hold()
	j := &job{x: x, n: n, key: r.Key, value: r.Value, dest: en.Destination, attempts: en.Attempts, due: en.Due,
		origin: en.Origin, heldAt: e.clock.Now(), trace: kafka.TraceHeaders(r.Headers)}
	j.payloads = &j.rendered
	if en.Ordered {
		j.lane, j.parked = laneKey(r.Key, en.Destination), true
		p.push(j)
	} else {
		p.spawn(func() { e.process(p, j, nil) })
	}
	return nil
}

// livePartition returns the partition whose handler was given ctx, or nil
// once it has stopped.
func livePartition(ctx context.Context) *partition {
	p := partitionFrom(ctx)
	if p == nil || p.ctx.Err() != nil {
		return nil
	}
	return p
}

// finish releases j's hold on its record, and for a parked delivery its
// place in the lane's count.
func (e *Engine) finish(p *partition, j *job) {
	if j.parked {
		p.parks.done(j.lane)
	}
	j.x.release()
}

// process runs j until it is delivered, dead-lettered or handed to the
// retry topic, and reports false when the partition stopped first (j is
// then left unfinished, to be read again by the partition's next owner).
// l is j's lane when j is a parked keyed delivery.
func (e *Engine) process(p *partition, j *job, l *lane) bool {
	if j.lane != "" && !j.parked {
		// A fresh keyed delivery whose lane has parked deliveries waits
		// behind them, in the retry topic.
		p.parks.mu.Lock()
		if p.parks.parked(j.lane) > 0 {
			e.handOff(p, j, true)
			p.parks.mu.Unlock()
			return true
		}
		p.parks.mu.Unlock()
	}
	for {
		if !j.due.IsZero() {
			if ok, done := e.waitDue(p, j, l); !ok || done {
				return ok
			}
		}
		// A subscription reference resolves too: a webhook to its URL.
		dest, version, ok := e.dests.Destination(j.n.TenantID, j.dest)
		if !ok {
			e.log.Warn("destination deleted; delivery dropped", "tenant", j.n.TenantID, "destination", j.dest, "notification", j.n.ID)
			e.skip(p, j, "destination-deleted", false)
			return true
		}
		if dest.Disabled != nil {
			e.skip(p, j, "disabled", true)
			return true
		}
		a, err, ok := e.attempt(p, j, dest, version)
		if !ok {
			return false
		}
		schedule := e.scheduleOf(dest)
		if err == nil {
			e.health.observe(j.n.TenantID, j.dest, true)
			e.record(a, func(error) { e.finish(p, j) })
			return true
		}
		ae := classify(err)
		wait, again := schedule.Wait(j.attempts, ae.After)
		if ae.Kind == Gone {
			e.disable(j.n.TenantID, j.dest, "the endpoint answered that it is gone: "+errText(err))
		} else if e.health.observe(j.n.TenantID, j.dest, false) {
			e.disable(j.n.TenantID, j.dest, fmt.Sprintf("failing without a success for %s", e.cfg.DisableAfter))
		}
		if ae.Kind != Retry || !again {
			e.deadLetter(p, j, a, ae)
			return true
		}
		next := e.clock.Now().Add(wait)
		a.NextAttemptAt = &next
		j.due = next
		e.record(a, nil)
		if wait <= e.cfg.RetryInMemory || j.parked {
			// A parked delivery keeps its lane's place: it waits in
			// memory, and waitDue hands the lane back to the retry topic
			// when the wait is long.
			j.heldAt = e.clock.Now()
			continue
		}
		p.parks.mu.Lock()
		e.handOff(p, j, j.lane != "")
		p.parks.mu.Unlock()
		return true
	}
}

// waitDue waits until j is due. A delivery read from the retry topic that
// is not due within RetryHold is written back to the topic's end instead
// of being held longer (for a parked lane: the lane's whole queue, in
// order, when nothing of the lane is elsewhere). It reports ok false when
// the partition stopped, done when j was handed off.
func (e *Engine) waitDue(p *partition, j *job, l *lane) (ok, done bool) {
	for {
		now := e.clock.Now()
		wait := j.due.Sub(now)
		if wait <= 0 {
			return true, false
		}
		fromRetry := p.retry
		if fromRetry {
			deadline := j.heldAt.Add(e.cfg.RetryHold)
			if !now.Before(deadline) {
				if e.requeue(p, j, l) {
					return true, true
				}
				j.heldAt = now
				deadline = now.Add(e.cfg.RetryHold)
			}
			wait = min(wait, deadline.Sub(now))
		}
		select {
		case <-p.ctx.Done():
			return false, false
		case <-e.clock.After(wait):
		}
	}
}

// requeue writes a held retry entry back to the retry topic's end. A
// parked lane goes back whole and in order, and only when every parked
// delivery of the lane is held here; otherwise it keeps waiting.
func (e *Engine) requeue(p *partition, j *job, l *lane) bool {
	if !j.parked {
		e.handOff(p, j, false)
		return true
	}
	p.parks.mu.Lock()
	defer p.parks.mu.Unlock()
	if p.parks.parked(j.lane) != 1+p.queued(l) {
		return false
	}
	e.handOff(p, j, true)
	for _, f := range p.takeLane(l) {
		e.handOff(p, f, true)
	}
	return true
}

// handOff writes j to the retry topic and finishes it once written. A
// keyed delivery (parked) counts in its lane; call with p.parks.mu held,
// so that a lane's writes keep their order.
func (e *Engine) handOff(p *partition, j *job, parked bool) {
	if parked {
		p.parks.add(j.lane, 1)
	}
	en := Entry{Destination: j.dest, Attempts: j.attempts, Due: j.due, Ordered: parked, Origin: j.origin}
	e.produce(&kgo.Record{Topic: e.topics.Retry, Key: j.key, Value: j.value, Headers: append(en.Headers(), j.trace...)}, func(err error) {
		if err != nil {
			return // unfinished: read again after a restart
		}
		e.finish(p, j)
	})
}

// attempt makes one attempt under the destination's bounds and then the
// process-wide one, and reports ok false when the partition stopped before
// it began. In that order, a delivery waiting for its destination holds
// none of the process's slots: a slow destination keeps at most its own
// bound of them from the others.
func (e *Engine) attempt(p *partition, j *job, dest configstore.Destination, version int64) (*Attempt, error, bool) {
	lim := e.limits.get(j.n.TenantID, j.dest, version, dest)
	if !lim.acquire(p.ctx) {
		return nil, nil, false
	}
	defer lim.release()
	select {
	case e.sem <- struct{}{}:
	case <-p.ctx.Done():
		return nil, nil, false
	}
	defer func() { <-e.sem }()
	j.attempts++
	ctx, span := e.startAttempt(j)
	start, began := e.clock.Now(), time.Now()
	j.delivery = Delivery{Notification: j.n, DestinationID: j.dest, Destination: dest, Attempt: j.attempts, payloads: j.payloads}
	resp, err := e.ch.Deliver(ctx, &j.delivery)
	took := time.Since(began)
	if err != nil && errors.Is(err, context.Canceled) && e.attemptCtx.Err() != nil {
		endAttempt(span, resp, "", err)
		return nil, nil, false
	}
	a := e.newAttempt(j, start)
	a.LatencyMs = took.Milliseconds()
	if resp.StatusCode != 0 {
		sc := int32(resp.StatusCode)
		a.StatusCode = &sc
	}
	if len(resp.Excerpt) > 0 {
		ex := string(resp.Excerpt[:min(len(resp.Excerpt), MaxExcerpt)])
		a.ResponseExcerpt = &ex
	}
	if err == nil {
		a.Outcome = OutcomeDelivered
	} else {
		ae := classify(err)
		a.Outcome = map[Kind]string{Retry: OutcomeRetry, Permanent: OutcomePermanent, Gone: OutcomeGone}[ae.Kind]
		a.ErrorClass, a.Error = &ae.Class, ptr(errText(err))
	}
	e.metrics.attempted(a.Outcome, took)
	endAttempt(span, resp, a.Outcome, err)
	return a, err, true
}

// startAttempt starts an attempt's span as a child of the trace context
// j's record carries; without a tracer it returns the attempts' context
// and a nil span.
func (e *Engine) startAttempt(j *job) (context.Context, trace.Span) {
	if e.tracer == nil {
		return e.attemptCtx, nil
	}
	return e.tracer.Start(kafka.HeadersContext(e.attemptCtx, j.trace), "deliver "+e.channel,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("herald.channel", e.channel),
			attribute.String("herald.tenant", j.n.TenantID),
			attribute.String("herald.destination", j.dest),
			attribute.String("herald.notification", j.n.ID),
			attribute.Int("herald.attempt", j.attempts),
		))
}

// endAttempt ends an attempt's span with its outcome and status code.
func endAttempt(span trace.Span, resp Response, outcome string, err error) {
	if span == nil {
		return
	}
	if outcome != "" {
		span.SetAttributes(attribute.String("herald.outcome", outcome))
	}
	if resp.StatusCode != 0 {
		span.SetAttributes(attribute.Int("herald.status_code", resp.StatusCode))
	}
	if err != nil {
		span.SetStatus(codes.Error, errText(err))
	}
	span.End()
}

func (e *Engine) newAttempt(j *job, start time.Time) *Attempt {
	j.attempt = Attempt{
		NotificationID: j.n.ID, TenantID: j.n.TenantID, DestinationID: j.dest, Channel: e.channel,
		Attempt: int32(j.attempts), StartedAt: start,
		OriginTopic: j.origin.Topic, OriginPartition: j.origin.Partition, OriginOffset: j.origin.Offset,
	}
	return &j.attempt
}

// skip records that no attempt was made and finishes j, dead-lettering it
// when dlq is set (it may be replayed once the destination is enabled).
func (e *Engine) skip(p *partition, j *job, class string, dlq bool) {
	a := e.newAttempt(j, e.clock.Now())
	a.Attempt = int32(j.attempts)
	a.Outcome, a.ErrorClass = OutcomeSkipped, &class
	if !dlq {
		e.record(a, func(error) { e.finish(p, j) })
		return
	}
	e.deadLetter(p, j, a, &AttemptError{Kind: Permanent, Class: class, Err: errors.New("destination " + class)})
}

// deadLetter writes j to the dead-letter topic with its last attempt.
func (e *Engine) deadLetter(p *partition, j *job, a *Attempt, ae *AttemptError) {
	a.DeadLettered = true
	e.log.Warn("delivery dead-lettered", "tenant", j.n.TenantID, "destination", j.dest, "notification", j.n.ID,
		"attempts", j.attempts, "err", ae)
	en := Entry{Destination: j.dest, Attempts: j.attempts, Ordered: j.lane != "", ErrorClass: ae.Class, Error: errText(ae.Err), Origin: j.origin}
	var wg countdown
	wg.init(2, func() { e.finish(p, j) })
	e.record(a, func(err error) { wg.done(err) })
	e.produce(&kgo.Record{Topic: e.topics.DLQ, Key: j.key, Value: j.value, Headers: append(en.Headers(), j.trace...)}, func(err error) {
		if err == nil {
			e.metrics.deadLettered(ae.Class)
		}
		wg.done(err)
	})
}

// record writes a to the deliveries topic and calls then once written.
func (e *Engine) record(a *Attempt, then func(error)) {
	schema, err := e.reg.Latest(e.attemptCtx, e.subjects.Attempt)
	var value []byte
	if err == nil {
		value, err = schema.Encode(a)
	}
	if err != nil {
		// The delivery stays unfinished: it is read again after a
		// restart, and its attempt recorded then.
		e.log.Error("attempt not recorded", "notification", a.NotificationID, "destination", a.DestinationID, "err", err)
		return
	}
	e.produce(&kgo.Record{Topic: e.topics.Deliveries, Key: []byte(a.NotificationID), Value: value}, then)
}

// scheduleOf returns the destination's schedule, or the global one.
func (e *Engine) scheduleOf(d configstore.Destination) Schedule {
	if len(d.RetrySchedule) > 0 {
		if s, err := ParseScheduleList(d.RetrySchedule); err == nil {
			return s
		}
	}
	return e.schedule
}

// countdown calls f once n calls of done succeeded.
type countdown struct {
	left atomic.Int32
	f    func()
}

func (c *countdown) init(n int, f func()) {
	c.left.Store(int32(n))
	c.f = f
}

func (c *countdown) done(err error) {
	if err == nil && c.left.Add(-1) == 0 {
		c.f()
	}
}

func errText(err error) string {
	var ae *AttemptError
	if errors.As(err, &ae) && ae.Err != nil {
		return ae.Err.Error()
	}
	return err.Error()
}

func ptr[T any](v T) *T { return &v }
