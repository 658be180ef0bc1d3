package judge

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/rules"
)

// OperationTimer is the operation `event` carries when a rule's timer comes
// due, rather than an entity change.
const OperationTimer = "TIMER"

// TimerOp is what an event does to one timed rule's timer for one entity.
type TimerOp struct {
	RuleID string
	// EntityType and EntityID name the entity the timer belongs to: one of
	// the rule's subject type (its first entity type).
	EntityType, EntityID string
	// Due is when the timer fires; zero cancels the timer.
	Due time.Time
	// Move is set when the event is another entity's than the timer's
	// (a usage event of a SIM, say): it moves the entity's timer, if it
	// has one, and keeps the state it was set with. Otherwise the event
	// becomes the timer's state: the entity as the timer will judge it.
	Move bool
}

// Due is a timer that has come due.
type Due struct {
	Tenant, RuleID string
	// EntityID is the id the timer is kept under (its rule's timerFor).
	EntityID string
	At       time.Time
	// State is the event, in the wire format, that last set the timer:
	// the entity's latest image.
	State []byte
}

// TimerEventID is the event id a timer's notification carries: derived
// from the entity and the due time, so that a timer fired again after a
// restart makes the same notification id.
func TimerEventID(entityType, entityID string, at time.Time) string {
	return "timer:" + entityType + "/" + entityID + "@" + at.UTC().Format("2006-01-02T15:04:05.000Z")
}

// schedule adds what an event does to a timed rule's timer to v.
func (j *Judge) schedule(rule *rules.Rule, ref notification.EventRef, in *rules.Input, v *Verdict) {
	subject := ref.EntityType == rule.Subject()
	deleted := ref.Operation == "DELETE"
	if !rule.Watches(ref.EntityType, ref.Operation) && !(deleted && subject) {
		return
	}
	op := TimerOp{RuleID: rule.ID, EntityType: rule.Subject()}
	if deleted && subject && rule.Spec.TimerFor == "" {
		// The entity is gone: its timer goes with it, whatever `at` says.
		op.EntityID = ref.EntityID
		v.Timers = append(v.Timers, op)
		return
	}
	entity, due, err := rule.Schedule(ref.EntityType, in)
	if err != nil {
		v.Failures = append(v.Failures, ruleFailure(rule.ID, err))
		return
	}
	if entity == "" {
		return
	}
	op.EntityID = entity
	switch {
	case !subject:
		// Another entity's event moves a timer, never sets or ends one.
		if due.IsZero() || deleted {
			return
		}
		op.Move, op.Due = true, due
	case deleted:
	case j.Horizon > 0 && !due.IsZero() && due.Before(j.now().Add(-j.Horizon)):
		// Long past: no timer rather than a surprise notification.
	default:
		op.Due = due
	}
	v.Timers = append(v.Timers, op)
}

// Timer judges a timer come due: its rule's `when` against the entity's
// latest state, with `event` describing the timer (operation TIMER, the
// due time as occurredAt). It returns a *RecordError when the state cannot
// be read, any other error when the world is at fault, else the verdict:
// no notification when the rule no longer exists or does not fire.
func (j *Judge) Timer(ctx context.Context, t Due) (v *Verdict, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, &RecordError{Reason: "judging the timer panicked", Err: fmt.Errorf("%v\n%s", p, debug.Stack())}
		}
	}()
	d, err := j.decode(ctx, t.State)
	if err != nil {
		return nil, err
	}
	_, new, err := d.images()
	if err != nil {
		return nil, err
	}
	// A timer is not a change: there is no old image.
	d.old = nil
	ref := d.ref
	ref.ID = TimerEventID(ref.EntityType, t.EntityID, t.At)
	ref.Operation = OperationTimer
	ref.OccurredAt = t.At.UTC()
	d.ref = ref
	v = &Verdict{Tenant: t.Tenant, Event: ref}
	rule := j.Rule(t.Tenant, t.RuleID)
	if rule == nil || !rule.Timed() || (j.TenantActive != nil && !j.TenantActive(t.Tenant)) {
		return v, nil
	}
	in := &rules.Input{New: new, Event: d.event(), Tenant: j.tenant(t.Tenant)}
	if d.generic != nil {
		in.Event = d.generic
		in.Event["operation"] = rules.Value(OperationTimer)
		in.Event["occurredAt"] = rules.Value(ref.OccurredAt)
		in.Event["eventId"] = rules.Value(ref.ID)
	}
	var newJSON *string
	bound, ok := rule.For(ref.EntityType)
	if !ok {
		return v, nil
	}
	if err := j.fire(ctx, v, bound, in, d, nil, &newJSON); err != nil {
		return nil, err
	}
	return v, nil
}

// fire evaluates one rule on in and adds its notification, or its
// failure, to v. The images' JSON is shared between the notifications
// of one event through oldJSON and newJSON.
func (j *Judge) fire(ctx context.Context, v *Verdict, rule rules.Bound, in *rules.Input,
	d *decoded, oldJSON, newJSON **string) error {
	fired, err := rule.Fires(in)
	if err != nil {
		v.Failures = append(v.Failures, ruleFailure(rule.ID, err))
		return nil
	}
	if !fired {
		return nil
	}
	res, err := rule.Outcome(in)
	if err != nil {
		v.Failures = append(v.Failures, ruleFailure(rule.ID, err))
		return nil
	}
	// The notification as this event makes it: a previous state or
	// threshold the rule computes is the event's own.
	spec := rule.Spec
	spec.Notification = res.Notification
	// A notification carries the images whole, which the rules may not
	// have needed: they are read once, when the first rule fires, as
	// JSON straight from the wire when the reader can.
	var old, new map[string]any
	if !d.imagesJSON(oldJSON, newJSON) {
		if old, new, err = d.images(); err != nil {
			return err
		}
	}
	m := notification.Match{
		Tenant: v.Tenant, Event: v.Event, Old: old, New: new,
		RuleID: rule.ID, Rule: spec, Fields: res.Fields, OrderingKey: res.OrderingKey,
	}
	if oldJSON != nil {
		m.OldJSON = *oldJSON
	}
	if newJSON != nil {
		m.NewJSON = *newJSON
	}
	enc, fail, err := j.notification(ctx, m)
	if enc.Notification != nil {
		if oldJSON != nil {
			*oldJSON = enc.Notification.Old
		}
		if newJSON != nil {
			*newJSON = enc.Notification.New
		}
	}
	switch {
	case err != nil:
		return err
	case fail != nil:
		v.Failures = append(v.Failures, *fail)
	default:
		v.Notifications = append(v.Notifications, enc)
	}
	return nil
}

// ruleFailure sorts a rule's evaluation error by reason.
func ruleFailure(rule string, err error) RuleFailure {
	reason := ReasonError
	if errors.Is(err, rules.ErrCostLimit) {
		reason = ReasonCostLimit
	}
	return RuleFailure{RuleID: rule, Reason: reason, Err: err}
}

// zones holds the `tenant` value of each time zone, made once: every
// event of a tenant reads the same.
var zones sync.Map

// tenant returns what `tenant` reads for a tenant's rules.
func (j *Judge) tenant(id string) map[string]any {
	zone := ""
	if j.TenantZone != nil {
		zone = j.TenantZone(id)
	}
	if zone == "" {
		zone = "UTC"
	}
	if m, ok := zones.Load(zone); ok {
		return m.(map[string]any)
	}
	m, _ := zones.LoadOrStore(zone, map[string]any{"timeZone": rules.Value(zone)})
	return m.(map[string]any)
}

func (j *Judge) now() time.Time {
	if j.Now != nil {
		return j.Now()
	}
	return time.Now()
}
