package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
)

// DestinationDisabled is the name of the notification a tenant's
// operational destinations get when Herald disables one of its
// destinations.
const DestinationDisabled = "DestinationDisabled"

// health tracks, per destination, how long it has failed without a
// success, from the attempts this process makes.
type health struct {
	clock Clock
	after time.Duration
	min   int
	mu    sync.Mutex
	m     map[destKey]*failing
	busy  map[destKey]bool // disable under way
}

// destKey names a tenant's destination in the engine's tables.
type destKey struct{ tenant, dest string }

type failing struct {
	since    time.Time
	attempts int
	tripped  bool
}

func newHealth(after time.Duration, min int, clock Clock) *health {
	return &health{clock: clock, after: after, min: min, m: map[destKey]*failing{}, busy: map[destKey]bool{}}
}

// observe notes an attempt's result and reports true once, when the
// destination has failed for long enough over enough attempts.
func (h *health) observe(tenant, dest string, ok bool) bool {
	key := destKey{tenant, dest}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		delete(h.m, key)
		return false
	}
	f := h.m[key]
	if f == nil {
		f = &failing{since: h.clock.Now()}
		h.m[key] = f
	}
	f.attempts++
	if !f.tripped && f.attempts >= h.min && h.clock.Now().Sub(f.since) >= h.after {
		f.tripped = true
		return true
	}
	return false
}

// disable marks the destination disabled in the configuration and tells
// the tenant's operational destinations. It runs in the background; when
// several replicas disable the same destination, the configuration's
// version check lets one through.
func (e *Engine) disable(tenant, dest, reason string) {
	key := destKey{tenant, dest}
	e.health.mu.Lock()
	if e.health.busy[key] {
		e.health.mu.Unlock()
		return
	}
	e.health.busy[key] = true
	e.health.mu.Unlock()
	go func() {
		defer func() {
			e.health.mu.Lock()
			delete(e.health.busy, key)
			e.health.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(e.attemptCtx, 30*time.Second)
		defer cancel()
		if err := e.disableNow(ctx, tenant, dest, reason); err != nil {
			e.log.Error("disable destination", "tenant", tenant, "destination", dest, "err", err)
		}
	}()
}

func (e *Engine) disableNow(ctx context.Context, tenant, dest, reason string) error {
	for range 5 {
		doc, ok := e.dests.Get(tenant, configstore.KindDestination, dest)
		if !ok {
			return nil
		}
		d := configstore.Spec[configstore.Destination](doc)
		if d.Disabled != nil {
			return nil
		}
		d.Disabled = &configstore.DisabledState{At: e.clock.Now().UTC().Truncate(time.Millisecond), Reason: reason}
		next, err := configstore.NewDocument(tenant, configstore.KindDestination, dest, d)
		if err != nil {
			return err
		}
		stored, err := e.dests.Put(ctx, next, doc.Version)
		if errors.Is(err, configstore.ErrVersionConflict) {
			continue
		}
		if err != nil {
			return err
		}
		e.log.Warn("destination disabled", "tenant", tenant, "destination", dest, "reason", reason)
		return e.tellDisabled(ctx, stored, d)
	}
	return errors.New("configuration kept changing")
}

// tellDisabled writes a DestinationDisabled notification to the tenant's
// enabled operational destinations. Its id derives from the destination
// and the version that disabled it, so replicas that race write the same
// notification.
func (e *Engine) tellDisabled(ctx context.Context, doc configstore.Document, d configstore.Destination) error {
	var to []string
	for _, od := range e.dests.List(doc.Tenant, configstore.KindDestination) {
		o := configstore.Spec[configstore.Destination](od)
		if o.Operational && o.Disabled == nil && od.ID != doc.ID {
			to = append(to, od.ID)
		}
	}
	if len(to) == 0 {
		e.log.Warn("no operational destination to tell of a disabled destination", "tenant", doc.Tenant, "destination", doc.ID)
		return nil
	}
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	at := d.Disabled.At
	n := notification.Notification{
		ID:           notification.ID(doc.Tenant, fmt.Sprintf("%s@%d", doc.ID, doc.Version), DestinationDisabled),
		TenantID:     doc.Tenant,
		Name:         DestinationDisabled,
		State:        "disabled",
		OrderingKey:  "destination/" + doc.ID,
		Destinations: to,
		CreatedAt:    at,
		Event: notification.EventRef{
			ID: fmt.Sprintf("%s@%d", doc.ID, doc.Version), EntityType: "Destination", EntityID: doc.ID,
			Operation: "UPDATE", OccurredAt: at,
		},
		Fields: map[string]string{
			"destinationId": str(doc.ID), "destinationName": str(d.Name), "destinationType": str(d.Type), "reason": str(d.Disabled.Reason),
		},
	}
	schema, err := e.reg.Latest(ctx, e.subjects.Notification)
	if err != nil {
		return err
	}
	value, err := schema.Encode(&n)
	if err != nil {
		return fmt.Errorf("encode %s: %w", DestinationDisabled, err)
	}
	rec := &kgo.Record{Topic: e.topics.Notifications, Key: event.RecordKey(n.TenantID, n.OrderingKey), Value: value}
	return e.cl.ProduceSync(ctx, rec).FirstErr()
}
