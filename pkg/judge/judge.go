// Package judge decides what one entity-change event yields: it decodes
// the event's wire-format bytes with the writer's schema, finds the rules
// that watch it, evaluates each, and builds and encodes the notification of
// every rule that fires. The rule evaluator runs it on every consumed
// event and the admin API's rules:test runs it on a sample, so the preview
// and production cannot disagree.
//
// A Judge sorts every failure by whose fault it is:
//
//   - the event's own fault, which no retry can mend: bytes that do not
//     decode, an envelope without a tenant, a rule that fails on the event,
//     a notification that cannot be encoded or is too large. Event-level
//     faults are a *RecordError; a rule's fault is a RuleFailure in the
//     Verdict while the event's other rules still run.
//   - the world's fault, which passes: the registry unreachable. Those are
//     returned as any other error, and the caller retries.
package judge

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// DefaultMaxRecordBytes bounds a notification record (key and value). It
// keeps under the broker's default message.max.bytes (1 MiB) with room for
// the batch and record headers, so that a notification the judge passes is
// one the broker takes.
const DefaultMaxRecordBytes = 1<<20 - 64<<10

// RecordError is an event that no retry can make into notifications: it
// belongs in the dead-letter topic with Reason.
type RecordError struct {
	Reason string
	Err    error
}

func (e *RecordError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *RecordError) Unwrap() error { return e.Err }

// Judge judges events. The zero value is not usable: Registry,
// NotificationSubject and Rules are required.
type Judge struct {
	// Registry decodes events and encodes notifications.
	Registry *havro.Registry
	// NotificationSubject is the registry subject of the Notification
	// record.
	NotificationSubject string
	// Rules returns the rules that watch an entity type's operation for a
	// tenant, and what they read of the event together, as rules.Index's
	// Watching does.
	Rules func(tenant, entityType, operation string) rules.Watching
	// TenantActive reports whether a tenant's rules still run; nil means
	// every tenant's do.
	TenantActive func(tenant string) bool
	// Destinations returns where a notification goes, its rule's
	// destinations and any subscription of its resource; nil keeps the
	// rule's.
	Destinations func(*notification.Notification) []string
	// MaxRecordBytes bounds a notification's key and value together; 0
	// means DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Now is the clock notifications are stamped with; nil means time.Now.
	Now func() time.Time
	// TenantZone returns a tenant's time zone, as `tenant.timeZone` reads
	// it; nil, or "", means UTC.
	TenantZone func(tenant string) string
	// Rule returns a tenant's rule by id, for a timer come due; nil when
	// there is none.
	Rule func(tenant, id string) *rules.Rule
	// Horizon bounds how far in the past a timer an event sets may be due:
	// a due time further back cancels the timer rather than fire it at
	// once. 0: no bound.
	Horizon time.Duration

	// projections holds a *projection by rules.Reads key, and envelopes
	// the wire reader's *envelopePlan by writer schema.
	projections, envelopes sync.Map
}

// Verdict is what one event yields.
type Verdict struct {
	Tenant string
	Event  notification.EventRef
	// Notifications are the encoded notifications of the rules that fired,
	// in the order the rules were given.
	Notifications []Encoded
	// Failures are the rules that failed on the event and yielded nothing.
	Failures []RuleFailure
	// Timers are what the event does to its timed rules' timers, in the
	// order the rules were given.
	Timers []TimerOp
}

// Encoded is one notification with its record key and Avro value.
type Encoded struct {
	Notification *notification.Notification
	Key, Value   []byte
}

// RuleFailure is a rule that could not judge the event, or whose
// notification could not be written.
type RuleFailure struct {
	RuleID string
	// Reason names the class of failure: "error", "cost_limit", "encode"
	// or "too_large".
	Reason string
	Err    error
}

// Reasons of a RuleFailure.
const (
	ReasonError     = "error"
	ReasonCostLimit = "cost_limit"
	ReasonEncode    = "encode"
	ReasonTooLarge  = "too_large"
)

// Event judges one event in the Confluent wire format. It returns a
// *RecordError when the event itself is at fault, any other error when
// the world is (the caller retries), else the verdict.
func (j *Judge) Event(ctx context.Context, value []byte) (v *Verdict, err error) {
	// A panic in a decoder or a rule is this event's doing: the same
	// bytes would panic again on every retry.
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, &RecordError{Reason: "judging the event panicked", Err: fmt.Errorf("%v\n%s", p, debug.Stack())}
		}
	}()
	d, err := j.decode(ctx, value)
	if err != nil {
		return nil, err
	}
	ref, tenant := d.ref, d.tenant
	if tenant == "" || ref.EntityType == "" || ref.Operation == "" {
		return nil, &RecordError{Reason: "event lacks tenantId, entityType or operation"}
	}
	v = &Verdict{Tenant: tenant, Event: ref}
	matched := j.Rules(tenant, ref.EntityType, ref.Operation)
	if len(matched.Rules) == 0 {
		return v, nil
	}
	// A deleted tenant's rules stop with its tenant document, before the
	// tombstones of the rules themselves arrive.
	if j.TenantActive != nil && !j.TenantActive(tenant) {
		return v, nil
	}
	in, err := j.input(d, matched.Reads)
	if err != nil {
		return nil, err
	}
	if matched.Reads.Tenant {
		in.Tenant = j.tenant(tenant)
	}
	// The rules that cannot fire, ruled out together; a bit each.
	var few [4]uint64
	ruledOut := few[:]
	if n := (len(matched.Rules) + 63) / 64; n > len(few) {
		ruledOut = make([]uint64, n)
	}
	matched.RuledOut(in, ruledOut)
	// The images as JSON, once a notification has written them.
	var oldJSON, newJSON *string
	for i, rule := range matched.Rules {
		// A timed rule's reads include the envelope, for its timer's
		// entity is the event's by default.
		if rule.Timed() {
			j.schedule(rule.Rule, ref, in, v)
			continue
		}
		if ruledOut[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		if err := j.fire(ctx, v, rule, in, d, &oldJSON, &newJSON); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// notification builds and encodes one rule's notification. A failure of
// the notification itself is a RuleFailure; an error is the world's.
func (j *Judge) notification(ctx context.Context, m notification.Match) (Encoded, *RuleFailure, error) {
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	n, err := notification.FromMatch(m, now())
	if err != nil {
		return Encoded{}, &RuleFailure{RuleID: m.RuleID, Reason: ReasonEncode, Err: err}, nil
	}
	if j.Destinations != nil {
		n.Destinations = j.Destinations(n)
	}
	schema, err := j.Registry.Latest(ctx, j.NotificationSubject)
	if err != nil {
		return Encoded{}, nil, fmt.Errorf("notification schema: %w", err)
	}
	value, err := schema.Encode(n)
	if err != nil {
		return Encoded{}, &RuleFailure{RuleID: m.RuleID, Reason: ReasonEncode, Err: fmt.Errorf("encode notification %s: %w", n.ID, err)}, nil
	}
	key := event.RecordKey(n.TenantID, n.OrderingKey)
	limit := j.MaxRecordBytes
	if limit == 0 {
		limit = DefaultMaxRecordBytes
	}
	if size := len(key) + len(value); size > limit {
		return Encoded{}, &RuleFailure{RuleID: m.RuleID, Reason: ReasonTooLarge,
			Err: fmt.Errorf("notification %s is %d bytes, over the limit of %d", n.ID, size, limit)}, nil
	}
	return Encoded{Notification: n, Key: key, Value: value}, nil, nil
}
