package catalog_test

import (
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/catalog"
	"github.com/heraldhq/herald/pkg/rules"
)

// timers runs a scheduled entry's rule as the evaluator does, on a clock
// the test moves: each event (re)sets or cancels the timer of the entity
// Schedule names, and moving the clock fires the timers due by then,
// judging the rule on the subject's latest image.
type timers struct {
	t      *testing.T
	b      builtin
	r      *rules.Rule
	tenant map[string]any
	now    time.Time
	// pending holds each entity's due time; latest its subject's latest
	// image.
	pending map[string]time.Time
	latest  map[string]map[string]any
	fired   []firing
}

// firing is one notification a timer gave.
type firing struct {
	entity string
	at     time.Time
}

func (b builtin) timers(t *testing.T, entry string, params, tenant map[string]any) *timers {
	t.Helper()
	r, _ := b.compile(t, entry, params)
	if !r.Timed() {
		t.Fatalf("%s: its rule has no at", entry)
	}
	return &timers{t: t, b: b, r: r, tenant: tenant, now: t0, pending: map[string]time.Time{}, latest: map[string]map[string]any{}}
}

// event applies an event that occurs now.
func (h *timers) event(entityType string, s sample) {
	h.t.Helper()
	s.at = h.now
	env := h.b.event(h.t, entityType, s)
	old, _ := env["old"].(map[string]any)
	nw, _ := env["new"].(map[string]any)
	entity, due, err := h.r.Schedule(entityType, &rules.Input{Old: old, New: nw, Event: env, Tenant: h.tenant})
	if err != nil {
		h.t.Fatalf("%s: Schedule: %v", s.name, err)
	}
	if entity == "" {
		return
	}
	if entityType == h.r.Subject() {
		h.latest[entity] = nw
	}
	if due.IsZero() {
		delete(h.pending, entity)
		return
	}
	h.pending[entity] = due
	h.advance(0) // a time already past fires at once
}

// due returns the entity's pending due time, zero for none.
func (h *timers) due(entity string) time.Time { return h.pending[entity] }

// advance moves the clock by d and fires the timers due by then, earliest
// first.
func (h *timers) advance(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	var due []string
	for entity, at := range h.pending {
		if !at.After(h.now) {
			due = append(due, entity)
		}
	}
	slices.SortFunc(due, func(a, b string) int { return h.pending[a].Compare(h.pending[b]) })
	for _, entity := range due {
		at := h.pending[entity]
		delete(h.pending, entity)
		res, err := h.r.Evaluate(h.r.Subject(), &rules.Input{
			New:    h.latest[entity],
			Tenant: h.tenant,
			Event: map[string]any{
				"eventId": "timer", "tenantId": "acme", "entityType": h.r.Subject(), "entityId": entity,
				"operation": "TIMER", "occurredAt": at,
			},
		})
		if err != nil {
			h.t.Fatalf("timer of %s due %s: %v", entity, at, err)
		}
		if res.Fired {
			h.fired = append(h.fired, firing{entity, at})
		}
	}
}

// until moves the clock to at.
func (h *timers) until(at time.Time) { h.advance(at.Sub(h.now)) }

// wantFired checks the notifications the timers gave so far.
func (h *timers) wantFired(want ...firing) {
	h.t.Helper()
	if !slices.Equal(h.fired, want) {
		h.t.Errorf("fired %v, want %v", h.fired, want)
	}
}

const day = 24 * time.Hour

func TestPlanExpiryWarning(t *testing.T) {
	b := loadBuiltin(t)
	end := t0.Add(30 * day)
	plan := map[string]any{"id": "pln-1", "accountId": "acc-1", "name": "Monthly 10GB", "status": "active",
		"autoRenew": false, "renewalFailures": int64(0), "rolloverAmount": map[string]any{}, "expiresAt": end}
	threeDays := map[string]any{"before": 3}

	t.Run("warned once, the set time before the end", func(t *testing.T) {
		h := b.timers(t, "PlanExpiryWarning", threeDays, nil)
		h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
		if got := h.due("e-1"); !got.Equal(end.Add(-3 * day)) {
			t.Fatalf("due %s, want %s", got, end.Add(-3*day))
		}
		h.until(end.Add(-3*day - time.Second))
		h.wantFired()
		h.until(end.Add(-3 * day))
		h.wantFired(firing{"e-1", end.Add(-3 * day)})
		h.until(end.Add(day))
		h.wantFired(firing{"e-1", end.Add(-3 * day)})
	})
	t.Run("in hours", func(t *testing.T) {
		h := b.timers(t, "PlanExpiryWarning", map[string]any{"before": 36, "unit": "hours"}, nil)
		h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
		h.until(end)
		h.wantFired(firing{"e-1", end.Add(-36 * time.Hour)})
	})
	t.Run("an end date moved later moves the warning", func(t *testing.T) {
		h := b.timers(t, "PlanExpiryWarning", threeDays, nil)
		h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
		h.advance(day)
		later := end.Add(10 * day)
		h.event("Plan", sample{name: "extended", op: "UPDATE", old: plan, new: with(plan, "expiresAt", later)})
		h.until(end)
		h.wantFired()
		h.until(later)
		h.wantFired(firing{"e-1", later.Add(-3 * day)})
	})
	t.Run("a plan created inside the window is warned at once", func(t *testing.T) {
		h := b.timers(t, "PlanExpiryWarning", threeDays, nil)
		h.event("Plan", sample{name: "created", op: "CREATE", new: with(plan, "expiresAt", t0.Add(day))})
		h.wantFired(firing{"e-1", t0.Add(-2 * day)})
	})
	never := []struct {
		name     string
		excludes string
		events   func(h *timers)
	}{
		{"a plan that renews automatically", "plans that renew automatically (autoRenew)", func(h *timers) {
			h.event("Plan", sample{name: "created", op: "CREATE", new: with(plan, "autoRenew", true)})
		}},
		{"a plan switched to renew automatically after its timer was set", "plans that renew automatically (autoRenew)", func(h *timers) {
			h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
			h.advance(day)
			h.event("Plan", sample{name: "auto-renew on", op: "UPDATE", old: plan, new: with(plan, "autoRenew", true)})
		}},
		{"a plan that ends for an upgrade", "an end for an upgrade to a new version (upgradedTo)", func(h *timers) {
			h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
			h.advance(day)
			h.event("Plan", sample{name: "upgrade scheduled", op: "UPDATE", old: plan, new: with(plan, "upgradedTo", "pln-2")})
		}},
		{"a plan cancelled before the warning", "a plan expired or cancelled by then", func(h *timers) {
			h.event("Plan", sample{name: "created", op: "CREATE", new: plan})
			h.advance(day)
			h.event("Plan", sample{name: "cancelled", op: "UPDATE", old: plan, new: with(plan, "status", "cancelled")})
		}},
		{"a plan without an end date", "a plan without an end date", func(h *timers) {
			h.event("Plan", sample{name: "created", op: "CREATE", new: with(plan, "expiresAt", nil)})
		}},
	}
	for _, tt := range never {
		t.Run(tt.name, func(t *testing.T) {
			h := b.timers(t, "PlanExpiryWarning", threeDays, nil)
			tt.events(h)
			h.until(end.Add(day))
			h.wantFired()
			checkExclusion(t, "PlanExpiryWarning", tt.excludes)
		})
	}
}

func TestInvoiceOverdue(t *testing.T) {
	b := loadBuiltin(t)
	dueDate := t0.Add(14 * day)
	posted := map[string]any{"id": "inv-1", "accountId": "acc-1", "status": "posted", "amount": 120.0, "amountDue": 120.0,
		"dueDate": dueDate, "postedAt": t0}
	paid := with(posted, "status", "paid", "amountDue", 0.0, "paidAt", t0.Add(10*day))

	t.Run("unpaid when the grace days have run", func(t *testing.T) {
		h := b.timers(t, "InvoiceOverdue", map[string]any{"graceDays": 5}, nil)
		h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
		h.until(dueDate.Add(5*day - time.Second))
		h.wantFired()
		h.until(dueDate.Add(30 * day))
		h.wantFired(firing{"e-1", dueDate.Add(5 * day)})
	})
	t.Run("without grace days, on the due date", func(t *testing.T) {
		h := b.timers(t, "InvoiceOverdue", nil, nil)
		h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
		h.until(dueDate.Add(30 * day))
		h.wantFired(firing{"e-1", dueDate})
	})
	t.Run("a draft is due once it is posted", func(t *testing.T) {
		h := b.timers(t, "InvoiceOverdue", nil, nil)
		draft := with(posted, "status", "draft", "postedAt", nil)
		h.event("Invoice", sample{name: "drafted", op: "CREATE", new: draft})
		if !h.due("e-1").IsZero() {
			t.Errorf("a draft has a timer due %s", h.due("e-1"))
		}
		h.advance(day)
		h.event("Invoice", sample{name: "posted", op: "UPDATE", old: draft, new: posted})
		h.until(dueDate.Add(day))
		h.wantFired(firing{"e-1", dueDate})
	})
	t.Run("a due date moved later moves it", func(t *testing.T) {
		h := b.timers(t, "InvoiceOverdue", nil, nil)
		h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
		h.advance(day)
		h.event("Invoice", sample{name: "terms extended", op: "UPDATE", old: posted, new: with(posted, "dueDate", dueDate.Add(7*day))})
		h.until(dueDate.Add(7*day - time.Second))
		h.wantFired()
		h.until(dueDate.Add(30 * day))
		h.wantFired(firing{"e-1", dueDate.Add(7 * day)})
	})
	never := []struct {
		name     string
		excludes string
		events   func(h *timers)
	}{
		{"paid before its due date", "an invoice paid, or with nothing due, by then", func(h *timers) {
			h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
			h.advance(10 * day)
			h.event("Invoice", sample{name: "paid", op: "UPDATE", old: posted, new: paid})
		}},
		{"nothing left due", "an invoice paid, or with nothing due, by then", func(h *timers) {
			h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
			h.advance(day)
			h.event("Invoice", sample{name: "credited", op: "UPDATE", old: posted, new: with(posted, "amountDue", 0.0)})
		}},
		{"voided", "a draft or void invoice", func(h *timers) {
			h.event("Invoice", sample{name: "posted", op: "CREATE", new: posted})
			h.advance(day)
			h.event("Invoice", sample{name: "voided", op: "UPDATE", old: posted, new: with(posted, "status", "void")})
		}},
		{"no due date", "an invoice without a due date", func(h *timers) {
			h.event("Invoice", sample{name: "posted", op: "CREATE", new: with(posted, "dueDate", nil)})
		}},
	}
	for _, tt := range never {
		t.Run(tt.name, func(t *testing.T) {
			h := b.timers(t, "InvoiceOverdue", nil, nil)
			tt.events(h)
			h.until(dueDate.Add(30 * day))
			h.wantFired()
			checkExclusion(t, "InvoiceOverdue", tt.excludes)
		})
	}
	t.Run("judged on the invoice as it is when due", func(t *testing.T) {
		r, _ := b.compile(t, "InvoiceOverdue", nil)
		for _, tt := range []struct {
			image map[string]any
			want  bool
		}{{posted, true}, {paid, false}, {with(posted, "paidAt", dueDate), false}} {
			res, err := r.Evaluate("Invoice", &rules.Input{New: tt.image,
				Event: map[string]any{"entityType": "Invoice", "entityId": "inv-1", "operation": "TIMER", "occurredAt": dueDate}})
			if err != nil || res.Fired != tt.want {
				t.Errorf("%v: fired %v, %v; want %v", tt.image, res.Fired, err, tt.want)
			}
		}
	})
}

func TestInvoiceDeliveryPlusDays(t *testing.T) {
	b := loadBuiltin(t)
	invoice := map[string]any{"id": "inv-1", "accountId": "acc-1", "status": "posted", "amount": 120.0}
	// 00:30 on Saturday 28 March 2026 in Madrid, the day before its clocks
	// go from UTC+1 to UTC+2; still the 27th in UTC.
	delivered := time.Date(2026, 3, 27, 23, 30, 0, 0, time.UTC)
	madrid := map[string]any{"timeZone": "Europe/Madrid"}
	twoDays := map[string]any{"days": 2, "at": "09:00"}

	tests := []struct {
		name   string
		params map[string]any
		tenant map[string]any
		want   time.Time
	}{
		{"two days after at 09:00 Madrid time, across the change", twoDays, madrid, time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC)},
		{"a tenant without a zone is in UTC", twoDays, nil, time.Date(2026, 3, 29, 9, 0, 0, 0, time.UTC)},
		{"one day after at 17:30 Madrid time, before the change", map[string]any{"days": 1, "at": "17:30"}, madrid, time.Date(2026, 3, 29, 15, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := b.timers(t, "InvoiceDeliveryPlusDays", tt.params, tt.tenant)
			h.now = delivered.Add(-day)
			h.event("Invoice", sample{name: "posted", op: "CREATE", new: invoice})
			h.until(delivered)
			h.event("Invoice", sample{name: "delivered", op: "UPDATE", old: invoice, new: with(invoice, "deliveredAt", delivered)})
			h.until(tt.want.Add(-time.Second))
			h.wantFired()
			h.until(tt.want.Add(7 * day))
			h.wantFired(firing{"e-1", tt.want})
		})
	}
	t.Run("an invoice not delivered", func(t *testing.T) {
		h := b.timers(t, "InvoiceDeliveryPlusDays", twoDays, madrid)
		h.event("Invoice", sample{name: "posted", op: "CREATE", new: invoice})
		h.until(t0.Add(30 * day))
		h.wantFired()
		checkExclusion(t, "InvoiceDeliveryPlusDays", "an invoice not delivered")
	})
}

func TestDormantSim(t *testing.T) {
	b := loadBuiltin(t)
	const iccid = "8944474600000109251"
	sim := map[string]any{"id": "sim-1", "iccid": iccid, "status": "active"}
	balance := map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 500.0, "used": 10.0, "remaining": 490.0}
	used := func(more float64) map[string]any {
		return with(balance, "used", 10+more, "remaining", 490-more)
	}
	thirty := map[string]any{"days": 30}

	t.Run("no usage for the set days", func(t *testing.T) {
		h := b.timers(t, "DormantSim", thirty, nil)
		h.event("Sim", sample{name: "activated", op: "CREATE", new: sim, deviceID: iccid})
		h.until(t0.Add(30*day - time.Second))
		h.wantFired()
		h.until(t0.Add(90 * day))
		h.wantFired(firing{iccid, t0.Add(30 * day)})
	})
	t.Run("usage on a balance moves it", func(t *testing.T) {
		h := b.timers(t, "DormantSim", thirty, nil)
		h.event("Sim", sample{name: "activated", op: "CREATE", new: sim, deviceID: iccid})
		h.advance(10 * day)
		h.event("Balance", sample{name: "data used", op: "UPDATE", old: balance, new: used(50), deviceID: iccid})
		h.until(t0.Add(30 * day))
		h.wantFired()
		h.until(t0.Add(90 * day))
		h.wantFired(firing{iccid, t0.Add(40 * day)})
	})
	t.Run("the Sim's last activity moves it", func(t *testing.T) {
		h := b.timers(t, "DormantSim", thirty, nil)
		h.event("Sim", sample{name: "activated", op: "CREATE", new: sim, deviceID: iccid})
		h.advance(20 * day)
		lastUse := t0.Add(19 * day)
		h.event("Sim", sample{name: "activity recorded", op: "UPDATE", old: sim, new: with(sim, "lastActivityAt", lastUse), deviceID: iccid})
		h.until(t0.Add(90 * day))
		h.wantFired(firing{iccid, lastUse.Add(30 * day)})
	})
	t.Run("a balance event of no device is no usage", func(t *testing.T) {
		h := b.timers(t, "DormantSim", thirty, nil)
		h.event("Sim", sample{name: "activated", op: "CREATE", new: sim, deviceID: iccid})
		h.advance(10 * day)
		h.event("Balance", sample{name: "top-up", op: "UPDATE", old: balance, new: with(balance, "total", 1000.0)})
		h.until(t0.Add(90 * day))
		h.wantFired(firing{iccid, t0.Add(30 * day)})
		checkExclusion(t, "DormantSim", "an event of no device")
	})
	t.Run("a SIM suspended meanwhile", func(t *testing.T) {
		h := b.timers(t, "DormantSim", thirty, nil)
		h.event("Sim", sample{name: "activated", op: "CREATE", new: sim, deviceID: iccid})
		h.advance(day)
		h.event("Sim", sample{name: "suspended", op: "UPDATE", old: sim, new: with(sim, "status", "suspended"), deviceID: iccid})
		h.until(t0.Add(90 * day))
		h.wantFired()
		checkExclusion(t, "DormantSim", "a SIM no longer active by then (suspended, terminated, or already dormant)")
	})
}

// checkExclusion fails unless the entry lists the exclusion a test shows.
func checkExclusion(t *testing.T, entry, exclusion string) {
	t.Helper()
	if !slices.Contains(catalogEntry(t, entry).Exclusions, exclusion) {
		t.Errorf("%s does not list the exclusion %q", entry, exclusion)
	}
}

func catalogEntry(t *testing.T, name string) *catalog.Entry {
	t.Helper()
	e, ok := catalog.New().Lookup(name)
	if !ok {
		t.Fatalf("no catalog entry %s", name)
	}
	return e
}

func (f firing) String() string { return f.entity + " at " + f.at.UTC().Format(time.RFC3339) }
