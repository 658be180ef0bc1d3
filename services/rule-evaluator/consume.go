package ruleevaluator

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/sync/errgroup"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// consume runs one transaction per poll until ctx ends.
func (e *Evaluator) consume(ctx context.Context) error {
	for {
		fetches := e.sess.PollRecords(ctx, e.maxBatch)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			e.base.Log.Warn("fetch", "topic", t, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := e.transact(ctx, fetches); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The session rewinds to the committed offsets after an
			// abort, so the same events are evaluated again.
			e.metrics.aborts.Add(ctx, 1)
			e.base.Log.Warn("transaction aborted; retrying", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

func (e *Evaluator) transact(ctx context.Context, fetches kgo.Fetches) error {
	if err := e.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	// A rule, or the deletion of a tenant, written before these events
	// were accepted applies to them, as a subscription does below.
	err := e.base.Config.WaitCaughtUp(ctx)
	// A rule still waiting to compile aborts the transaction: the session
	// rewinds, and these events are judged once it has compiled.
	if err == nil {
		err = e.loadPending(ctx)
	}
	if err == nil {
		// A subscription written before these events were accepted
		// applies to them: one ListOffsets per transaction buys that.
		err = e.subs.WaitCaughtUp(ctx)
	}
	var out []*kgo.Record
	if err == nil {
		out, err = e.evaluateAll(ctx, fetches)
	}
	if err == nil && len(out) > 0 {
		err = e.sess.Client().ProduceSync(ctx, out...).FirstErr()
	}
	action := kgo.TryCommit
	if err != nil {
		action = kgo.TryAbort
	}
	committed, endErr := e.sess.End(ctx, action)
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
		}
	}
	e.metrics.events.Add(ctx, int64(fetches.NumRecords()))
	e.metrics.notifications.Add(ctx, int64(len(out)-dead))
	e.metrics.deadLetters.Add(ctx, int64(dead))
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
// that fires, or a dead letter if the event cannot be read.
func (e *Evaluator) evaluate(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	var decoded any
	if _, err := e.base.Registry.Decode(ctx, r.Value, &decoded); err != nil {
		var we *havro.WireError
		if errors.As(err, &we) {
			return []*kgo.Record{e.deadLetter(r, we.Error())}, nil
		}
		return nil, fmt.Errorf("decode event at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	env, ok := decoded.(map[string]any)
	if !ok {
		return []*kgo.Record{e.deadLetter(r, "event is not a record")}, nil
	}
	ev, tenant := notification.Ref(env)
	if tenant == "" || ev.EntityType == "" || ev.Operation == "" {
		return []*kgo.Record{e.deadLetter(r, "event lacks tenantId, entityType or operation")}, nil
	}
	matched := e.index.Match(tenant, ev.EntityType, ev.Operation)
	if len(matched) == 0 {
		return nil, nil
	}
	// A deleted tenant's rules stop with its tenant document, before the
	// tombstones of the rules themselves arrive.
	if _, ok := e.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, tenant); !ok {
		return nil, nil
	}
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	in := &rules.Input{Old: old, New: nw, Event: env}
	var out []*kgo.Record
	for _, rule := range matched {
		res, err := rule.Evaluate(ev.EntityType, in)
		if err != nil {
			// A rule that errors or hits its cost limit does not fire;
			// the others still judge the event.
			reason := "error"
			if errors.Is(err, rules.ErrCostLimit) {
				reason = "cost_limit"
			}
			e.metrics.ruleFailures.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
			e.base.Log.Warn("rule did not fire: evaluation failed", "tenant", tenant, "rule", rule.ID, "err", err,
				"cost_limit", errors.Is(err, rules.ErrCostLimit), "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
			continue
		}
		if !res.Fired {
			continue
		}
		rec, err := e.notification(ctx, notification.Match{
			Tenant: tenant, Event: ev, Old: old, New: nw,
			RuleID: rule.ID, Rule: rule.Spec, Fields: res.Fields, OrderingKey: res.OrderingKey,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func (e *Evaluator) notification(ctx context.Context, m notification.Match) (*kgo.Record, error) {
	n, err := notification.FromMatch(m, time.Now())
	if err != nil {
		return nil, err
	}
	n.Destinations = e.subs.Destinations(n)
	schema, err := e.base.Registry.Latest(ctx, e.base.NotificationSubject())
	if err != nil {
		return nil, err
	}
	value, err := schema.Encode(n)
	if err != nil {
		return nil, fmt.Errorf("encode notification %s: %w", n.ID, err)
	}
	return &kgo.Record{
		Topic: e.base.Topics.Notifications,
		Key:   event.RecordKey(n.TenantID, n.OrderingKey),
		Value: value,
	}, nil
}

// deadLetter copies an unreadable event to the dead-letter topic with
// headers saying why and where it came from.
func (e *Evaluator) deadLetter(r *kgo.Record, reason string) *kgo.Record {
	e.base.Log.Warn("event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	return &kgo.Record{
		Topic: e.base.Topics.EventsDLQ,
		Key:   r.Key,
		Value: r.Value,
		Headers: append(append([]kgo.RecordHeader(nil), r.Headers...),
			kgo.RecordHeader{Key: "herald-error", Value: []byte(reason)},
			kgo.RecordHeader{Key: "herald-origin", Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)},
		),
	}
}
