package ruleevaluator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// consume runs one transaction per poll until ctx ends.
func (e *Evaluator) consume(ctx context.Context) error {
	for {
		fetches := e.sess.PollFetches(ctx)
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
	var out []*kgo.Record
	var err error
	fetches.EachRecord(func(r *kgo.Record) {
		if err != nil {
			return
		}
		var recs []*kgo.Record
		recs, err = e.evaluate(ctx, r)
		out = append(out, recs...)
	})
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
	return nil
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
	ev := envelope(env)
	if ev.tenant == "" || ev.entityType == "" || ev.operation == "" {
		return []*kgo.Record{e.deadLetter(r, "event lacks tenantId, entityType or operation")}, nil
	}
	matched := e.index.Match(ev.tenant, ev.entityType, ev.operation)
	if len(matched) == 0 {
		return nil, nil
	}
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	eventVar := make(map[string]any, len(env))
	for k, v := range env {
		if k != "old" && k != "new" {
			eventVar[k] = v
		}
	}
	eventVar["id"] = ev.id
	act := rules.Input{Old: old, New: nw, Event: eventVar}.Activation()
	var out []*kgo.Record
	for _, rule := range matched {
		fired, fields, err := rule.Match(act)
		if err != nil {
			e.base.Log.Warn("rule not evaluated", "tenant", ev.tenant, "rule", rule.ID, "err", err,
				"topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
			continue
		}
		if !fired {
			continue
		}
		rec, err := e.notification(ctx, ev, rule, old, nw, fields)
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// eventHeader is the part of the envelope a notification refers to.
type eventHeader struct {
	id, tenant, entityType, entityID, operation string
	occurredAt                                  time.Time
	accountID, deviceID, correlationID          *string
}

func envelope(m map[string]any) eventHeader {
	str := func(k string) string { s, _ := m[k].(string); return s }
	opt := func(k string) *string {
		if s, ok := m[k].(string); ok {
			return &s
		}
		return nil
	}
	at, _ := m["occurredAt"].(time.Time)
	return eventHeader{
		id: str("eventId"), tenant: str("tenantId"), entityType: str("entityType"), entityID: str("entityId"),
		operation: str("operation"), occurredAt: at,
		accountID: opt("accountId"), deviceID: opt("deviceId"), correlationID: opt("correlationId"),
	}
}

func (e *Evaluator) notification(ctx context.Context, ev eventHeader, rule *rules.Rule, old, nw map[string]any, fields map[string]any) (*kgo.Record, error) {
	spec := rule.Spec
	acct := ""
	if ev.accountID != nil {
		acct = *ev.accountID
	}
	n := notification.Notification{
		ID:           notification.ID(ev.tenant, ev.id, rule.ID),
		TenantID:     ev.tenant,
		RuleID:       rule.ID,
		Name:         spec.Notification.Name,
		State:        spec.Notification.State,
		Threshold:    spec.Notification.Threshold,
		OrderingKey:  event.PartitionKey(acct, ev.entityType, ev.entityID),
		Ordered:      spec.Ordering != configstore.Unordered,
		Destinations: spec.Destinations,
		CreatedAt:    time.Now().UTC(),
		Event: notification.EventRef{
			ID: ev.id, EntityType: ev.entityType, EntityID: ev.entityID, Operation: ev.operation,
			OccurredAt: ev.occurredAt, AccountID: ev.accountID, DeviceID: ev.deviceID, CorrelationID: ev.correlationID,
		},
		Fields: make(map[string]string, len(fields)),
	}
	if spec.Notification.PrevState != "" {
		n.PrevState = &spec.Notification.PrevState
	}
	var err error
	if n.Old, err = jsonText(old); err != nil {
		return nil, err
	}
	if n.New, err = jsonText(nw); err != nil {
		return nil, err
	}
	for k, v := range fields {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("rule %s: field %s: %w", rule.ID, k, err)
		}
		n.Fields[k] = string(b)
	}
	schema, err := e.base.Registry.Latest(ctx, e.base.NotificationSubject())
	if err != nil {
		return nil, err
	}
	value, err := schema.Encode(&n)
	if err != nil {
		return nil, fmt.Errorf("encode notification %s: %w", n.ID, err)
	}
	return &kgo.Record{
		Topic: e.base.Topics.Notifications,
		Key:   event.RecordKey(n.TenantID, n.OrderingKey),
		Value: value,
	}, nil
}

func jsonText(m map[string]any) (*string, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("entity to JSON: %w", err)
	}
	s := string(b)
	return &s, nil
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
