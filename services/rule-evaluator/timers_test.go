package ruleevaluator

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/catalog"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

func TestTimerTableOrdersMovesAndCancels(t *testing.T) {
	tb := newTimerTable()
	a, b, c := newTimerID("a"), newTimerID("b"), newTimerID("c")
	tb.set(a, 300, 1)
	tb.set(b, 100, 2)
	tb.set(c, 200, 3)
	if got := tb.due(150, 10); len(got) != 1 || got[0].id != b || got[0].state != 2 {
		t.Fatalf("due at 150 = %+v, want b alone", got)
	}
	tb.move(b, 400)  // later: nothing due at 150 now
	tb.set(c, 50, 9) // a new state and an earlier time
	got := tb.due(350, 10)
	slices.SortFunc(got, func(x, y dueTimer) int { return int(x.due - y.due) })
	if len(got) != 2 || got[0].id != c || got[0].state != 9 || got[1].id != a {
		t.Fatalf("due at 350 = %+v, want c (state 9) then a", got)
	}
	tb.cancel(c)
	tb.cancel(c) // twice is harmless
	if tb.move(c, 10) {
		t.Error("a cancelled timer moved")
	}
	if next, ok := tb.next(); !ok || next != 300 || tb.Len() != 2 {
		t.Fatalf("next = %d, %v with %d pending; want 300 with 2", next, ok, tb.Len())
	}
	// A freed slot is reused.
	tb.set(newTimerID("d"), 10, 4)
	if len(tb.slots) != 3 {
		t.Errorf("%d slots for 3 timers and one cancelled", len(tb.slots))
	}
	if got := tb.due(1000, 2); len(got) != 2 {
		t.Errorf("due with a limit of 2 gave %d", len(got))
	}
}

// clock is a settable clock for timers.
type clock struct{ ms atomic.Int64 }

func (c *clock) now() time.Time            { return time.UnixMilli(c.ms.Load()) }
func (c *clock) set(t time.Time)           { c.ms.Store(t.UnixMilli()) }
func newClock(t time.Time) *clock          { c := &clock{}; c.set(t); return c }
func (c *clock) add(d time.Duration)       { c.ms.Add(d.Milliseconds()) }
func (c *clock) String() string            { return c.now().UTC().Format(time.RFC3339) }
func ms(t time.Time) string                { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
func plus(t time.Time, days int) time.Time { return t.Add(time.Duration(days) * 24 * time.Hour) }

// startTimed runs an evaluator on cfg whose timers come due by clk, and
// returns it with a function that stops it as a killed replica's
// successor would find it: its open transaction aborted, its timers in
// the topic.
func startTimed(t *testing.T, cfg service.Config, clk *clock) (*Evaluator, func()) {
	t.Helper()
	e, err := New(t.Context(), Config{Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 100, TimerHorizon: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	e.now = clk.now
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		e.Close()
	}
	t.Cleanup(stop)
	wait, cancelWait := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelWait()
	if err := e.base.Config.WaitCaughtUp(wait); err != nil {
		t.Fatal(err)
	}
	return e, stop
}

// TestTimersFireOnceAtTheirTime runs the evaluator on kfake with a rule
// that warns three days before a plan's end, and a clock the test moves:
// a plan is warned once, at its time; an end moved later moves the
// warning; a plan that renews itself is never warned; a deleted plan's
// timer is cancelled; and a new replica loads the pending timers from the
// topic and fires each exactly once.
func TestTimersFireOnceAtTheirTime(t *testing.T) {
	cfg := servicetest.Fakes(t, 2)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	e, stop := startTimed(t, cfg, clk)
	put := func(tenant, kind, id string, spec any) {
		t.Helper()
		doc, err := configstore.NewDocument(tenant, kind, id, spec)
		if err == nil {
			_, err = e.base.Config.Put(t.Context(), doc, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	put(configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "acme"})
	put("acme", configstore.KindRule, "reminder", configstore.Rule{
		Name: "renewal reminder", On: configstore.RuleOn{EntityTypes: []string{"Plan"}},
		At:           "new.expiresAt - duration('72h')",
		When:         "new.status == 'active' && new.autoRenew != true",
		Notification: configstore.RuleNotify{Name: "RenewalReminder", State: "due"},
	})

	plan := func(id string, expires time.Time, autoRenew bool) map[string]any {
		return map[string]any{"id": id, "accountId": "acct-" + id, "name": "Gold", "status": "active",
			"autoRenew": autoRenew, "expiresAt": ms(expires), "renewalFailures": 0, "rolloverAmount": map[string]any{}}
	}
	var recs []*kgo.Record
	emit := func(op, id string, old, new map[string]any) {
		t.Helper()
		acct := "acct-" + id
		key, value, err := event.Encode(t.Context(), e.base.Registry, e.base.Topics.Events, "acme", &event.Event{
			EntityType: "Plan", EntityID: id, Operation: op, AccountID: &acct, Old: old, New: new,
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: e.base.Topics.Events, Key: key, Value: value})
	}
	emit("CREATE", "warned", nil, plan("warned", plus(t0, 10), false))                             // due t0+7d
	emit("CREATE", "renews", nil, plan("renews", plus(t0, 10), true))                              // due t0+7d, never fires
	emit("CREATE", "moved", nil, plan("moved", plus(t0, 5), false))                                // due t0+2d…
	emit("UPDATE", "moved", plan("moved", plus(t0, 5), false), plan("moved", plus(t0, 20), false)) // …then t0+17d
	emit("CREATE", "deleted", nil, plan("deleted", plus(t0, 4), false))                            // due t0+1d…
	emit("DELETE", "deleted", plan("deleted", plus(t0, 4), false), nil)                            // …cancelled
	emit("CREATE", "inside", nil, plan("inside", t0.Add(60*time.Hour), false))                     // inside its window: at once
	emit("CREATE", "ancient", nil, plan("ancient", plus(t0, -30), false))                          // beyond the horizon: never

	cl := notificationReader(t, cfg)
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := map[string][]time.Time{} // plan → the due times it was warned at
	read := func(want int) {
		t.Helper()
		n := 0
		for _, ids := range got {
			n += len(ids)
		}
		deadline := time.Now().Add(20 * time.Second)
		for n < want {
			ctx, cancel := context.WithDeadline(t.Context(), deadline)
			fs := cl.PollFetches(ctx)
			cancel()
			if time.Now().After(deadline) {
				t.Fatalf("at %v: %d notifications, want %d: %v", clk, n, want, got)
			}
			fs.EachRecord(func(r *kgo.Record) {
				if r.Topic != e.base.Topics.Notifications {
					t.Errorf("dead letter: %s", r.Headers)
					return
				}
				var nt notification.Notification
				if _, err := e.base.Registry.Decode(t.Context(), r.Value, &nt); err != nil {
					t.Fatal(err)
				}
				if nt.Event.Operation != judge.OperationTimer {
					t.Errorf("notification of operation %s, want TIMER", nt.Event.Operation)
				}
				wantID := notification.ID("acme", judge.TimerEventID("Plan", nt.Event.EntityID, nt.Event.OccurredAt), "reminder")
				if nt.ID != wantID {
					t.Errorf("notification id %s, want %s: derived from rule, entity and due time", nt.ID, wantID)
				}
				got[nt.Event.EntityID] = append(got[nt.Event.EntityID], nt.Event.OccurredAt)
				n++
			})
		}
	}
	// The plan created inside its window is warned at once.
	read(1)
	if w := got["inside"]; len(w) != 1 || !w[0].Equal(t0.Add(-12*time.Hour)) {
		t.Fatalf("inside: warned at %v, want once at its due time %v", w, t0.Add(-12*time.Hour))
	}
	waitPending(t, e, 3) // warned, renews, moved

	clk.set(plus(t0, 7).Add(time.Second))
	read(2)
	if w := got["warned"]; len(w) != 1 || !w[0].Equal(plus(t0, 7)) {
		t.Fatalf("warned: at %v, want once at %v", w, plus(t0, 7))
	}
	waitPending(t, e, 1) // moved; renews fired without a notification

	// A new replica finds the one timer left in the topic.
	stop()
	clk.set(plus(t0, 17).Add(time.Second))
	e2, _ := startTimed(t, cfg, clk)
	read(3)
	waitPending(t, e2, 0)
	if w := got["moved"]; len(w) != 1 || !w[0].Equal(plus(t0, 17)) {
		t.Fatalf("moved: at %v, want once at the new time %v", w, plus(t0, 17))
	}
	for _, id := range []string{"renews", "deleted", "ancient"} {
		if len(got[id]) != 0 {
			t.Errorf("%s: warned at %v, want never", id, got[id])
		}
	}
	// What the metrics say of it.
	rec := httptest.NewRecorder()
	e2.base.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for name, want := range map[string]string{"herald_timers_pending": "0", "herald_timers_fired_total": "1", "herald_timer_lag_seconds_count": "1"} {
		if got := metricValue(rec.Body.String(), name); got != want {
			t.Errorf("%s = %q, want %s", name, got, want)
		}
	}
	// Nothing fires twice, however long the clock runs on.
	clk.add(365 * 24 * time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if fs := cl.PollFetches(ctx); fs.NumRecords() > 0 {
		t.Errorf("%d more records after every timer fired", fs.NumRecords())
	}
}

// waitPending waits until e holds n pending timers.
func waitPending(t *testing.T, e *Evaluator, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.pendingTimers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers pending, want %d", e.pendingTimers(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkMillionTimers holds 1,000,000 pending timers in one table, as
// one replica would, and reports the heap each costs (bytes/timer), then
// how long setting one and firing one take (the ns/op is per timer set and
// fired).
func BenchmarkMillionTimers(b *testing.B) {
	const n = 1_000_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("acme/rul_expiry/Plan/plan-%07d", i)
	}
	ids := make([]timerID, n)
	for i, name := range names {
		ids[i] = newTimerID(name)
	}
	names = nil
	var heap float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := newTimerTable()
		for i, id := range ids {
			// Due times spread over a year, in no order.
			tb.set(id, int64((i*7919)%n)*31_536, int64(i))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapAlloc-before.HeapAlloc) / n
		for fired := 0; fired < n; {
			due := tb.due(int64(fired+1000)*31_536, 1000)
			for _, d := range due {
				tb.cancel(d.id)
			}
			fired += len(due)
			if len(due) == 0 {
				b.Fatal("nothing due")
			}
		}
		runtime.KeepAlive(tb)
	}
	b.ReportMetric(heap, "bytes/timer")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/timer")
}

// TestDormantSimMovesWithUsage installs the catalog's DormantSim on kfake
// with a clock the test moves: a SIM's timer is set by its own events and
// moved by usage of its device; it fires on the SIM as it is then, and
// not for a SIM no longer active.
func TestDormantSimMovesWithUsage(t *testing.T) {
	cfg := servicetest.Fakes(t, 2)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	e, _ := startTimed(t, cfg, clk)
	entry, ok := catalog.New().Lookup("DormantSim")
	if !ok {
		t.Fatal("no DormantSim in the catalog")
	}
	entities, err := e.base.Entities(t.Context(), entry.On.EntityTypes, false)
	if err != nil {
		t.Fatal(err)
	}
	rule, err := entry.Rule(map[string]any{"days": 30}, entities)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		tenant, kind, id string
		spec             any
	}{
		{configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "acme"}},
		{"acme", configstore.KindRule, "dormant", rule},
	} {
		doc, err := configstore.NewDocument(d.tenant, d.kind, d.id, d.spec)
		if err == nil {
			_, err = e.base.Config.Put(t.Context(), doc, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sim := func(id, iccid, status string) map[string]any {
		return map[string]any{"id": id, "iccid": iccid, "accountId": "acct-1", "status": status, "lastActivityAt": ms(t0)}
	}
	balance := map[string]any{"id": "bal-1", "accountId": "acct-1", "unit": "MB", "total": 1000.0, "used": 10.0, "remaining": 990.0}
	var recs []*kgo.Record
	emit := func(entityType, id, op, device string, at time.Time, old, new map[string]any) {
		t.Helper()
		acct := "acct-1"
		key, value, err := event.Encode(t.Context(), e.base.Registry, e.base.Topics.Events, "acme", &event.Event{
			EntityType: entityType, EntityID: id, Operation: op, AccountID: &acct, DeviceID: &device,
			OccurredAt: ms(at), Old: old, New: new,
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: e.base.Topics.Events, Key: key, Value: value})
	}
	emit("Sim", "sim-1", "CREATE", "8944-1", t0, nil, sim("sim-1", "8944-1", "active"))                                           // due t0+30d…
	emit("Sim", "sim-2", "CREATE", "8944-2", t0, nil, sim("sim-2", "8944-2", "active"))                                           // due t0+30d
	emit("Balance", "bal-1", "UPDATE", "8944-1", plus(t0, 10), balance, balance)                                                  // …moved to t0+40d
	emit("Balance", "bal-1", "UPDATE", "8944-9", plus(t0, 11), balance, balance)                                                  // no such SIM: nothing
	emit("Sim", "sim-2", "UPDATE", "8944-2", plus(t0, 12), sim("sim-2", "8944-2", "active"), sim("sim-2", "8944-2", "suspended")) // still due t0+30d, suspended
	cl := notificationReader(t, cfg)
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitPending(t, e, 2)

	// sim-2 comes due suspended: no notification. sim-1 was moved.
	clk.set(plus(t0, 30).Add(time.Second))
	waitPending(t, e, 1)
	clk.set(plus(t0, 40).Add(time.Second))
	waitPending(t, e, 0)
	// Every timer has fired: what is committed is all there will be. The
	// reader waits as long as it takes for the first notification (it may
	// still be joining), then a second for any more.
	var got []notification.Notification
	first := time.Now().Add(30 * time.Second)
	for {
		wait := time.Second
		if len(got) == 0 {
			wait = time.Until(first)
		}
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		fs := cl.PollFetches(ctx)
		cancel()
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			var n notification.Notification
			if _, err := e.base.Registry.Decode(t.Context(), r.Value, &n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		})
	}
	if len(got) != 1 {
		t.Fatalf("%d notifications, want sim-1's alone: %+v", len(got), got)
	}
	n := got[0]
	if n.Name != "DormantSim" || n.Event.EntityType != "Sim" || n.Event.EntityID != "sim-1" || !n.Event.OccurredAt.Equal(plus(t0, 40)) {
		t.Errorf("notification %s on %s %s at %v, want DormantSim on Sim sim-1 at %v", n.Name, n.Event.EntityType, n.Event.EntityID, n.Event.OccurredAt, plus(t0, 40))
	}
}

// metricValue returns the value of a metric's first sample in a
// Prometheus exposition.
func metricValue(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}
