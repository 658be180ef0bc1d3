package ruleevaluator_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

// TestTimersFireOnceThroughEvaluatorKills sets 10,000 timers due over 20
// seconds on the real broker, with the real clock, and kills the
// evaluator, a real process, with SIGKILL twice while they come due. Each
// timer must fire exactly once, and within a second of its due time, or
// of the evaluator being back when it was due while it was away.
func TestTimersFireOnceThroughEvaluatorKills(t *testing.T) {
	c := newCluster(t)
	bin := servicetest.Build(t, "./cmd/rule-evaluator")
	const (
		tenant = "acme"
		ruleID = "rul_expiry"
		timers = 10000
		spread = 20 * time.Second
	)
	c.put(t,
		doc(t, configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: "Acme"}),
		doc(t, tenant, configstore.KindRule, ruleID, configstore.Rule{
			Name: "ends", On: configstore.RuleOn{EntityTypes: []string{"Plan"}},
			At:           "new.expiresAt",
			When:         "new.status == 'active'",
			Notification: configstore.RuleNotify{Name: "PlanEnds", State: "ended"},
		}),
	)
	txid := c.cfg.TopicPrefix + "evaluator-0"
	proc := startEvaluator(t, bin, c, txid)

	// The timers come due from 25 seconds after they are written, time
	// enough for the evaluator to join its group, judge the plans and set
	// their timers on a busy machine: in a CI run with the other packages'
	// tests beside it, 15 seconds once left it setting them while the
	// first came due, and those fired seconds late.
	first := time.Now().Add(25 * time.Second).Truncate(time.Millisecond)
	due := map[string]time.Time{} // plan id → due
	var recs []*kgo.Record
	for i := range timers {
		id := fmt.Sprintf("plan-%05d", i)
		at := first.Add(spread * time.Duration(i) / timers)
		due[id] = at
		acct := fmt.Sprintf("acct-%d", i%500)
		key, value, err := event.Encode(t.Context(), c.reg, c.cfg.Topics().Events, tenant, &event.Event{
			EventID: "evt-" + id, EntityType: "Plan", EntityID: id, Operation: "CREATE", AccountID: &acct,
			New: map[string]any{"id": id, "accountId": acct, "name": "Gold", "status": "active", "autoRenew": false,
				"expiresAt": at.UTC().Format(time.RFC3339Nano), "renewalFailures": 0, "rolloverAmount": map[string]any{}},
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: c.cfg.Topics().Events, Key: key, Value: value})
	}
	if err := c.cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	consumer := servicetest.Reader(t, c.cfg.Brokers, c.cfg.Topics().Notifications)
	// fired holds, by plan, when each of its notifications was made.
	fired := map[string][]time.Time{}
	count := 0
	collect := func(until time.Time) {
		ctx, cancel := context.WithDeadline(t.Context(), until)
		defer cancel()
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var n notification.Notification
			if _, err := c.reg.Decode(t.Context(), r.Value, &n); err != nil {
				t.Fatalf("notification does not decode: %v", err)
			}
			if !n.Event.OccurredAt.Equal(due[n.Event.EntityID]) {
				t.Errorf("%s fired for %v, want its due time %v", n.Event.EntityID, n.Event.OccurredAt, due[n.Event.EntityID])
			}
			fired[n.Event.EntityID] = append(fired[n.Event.EntityID], n.CreatedAt)
			count++
		})
	}

	// Killed 4 and 11 seconds into the timers coming due, each time
	// started again at once, with the same transactional id.
	var restarts []time.Time
	for _, at := range []time.Duration{4 * time.Second, 11 * time.Second} {
		for time.Now().Before(first.Add(at)) {
			collect(first.Add(at))
		}
		proc.Kill()
		restarts = append(restarts, time.Now())
		t.Logf("killed the evaluator %v into the timers, %d of %d fired", at, count, timers)
		proc.Start()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(fired) < timers && time.Now().Before(deadline) {
		collect(time.Now().Add(500 * time.Millisecond))
	}
	// Anything fired twice would show within a few more polls.
	for range 4 {
		collect(time.Now().Add(500 * time.Millisecond))
	}

	// back is when the evaluator was back after each restart: when it made
	// its first notification.
	back := make([]time.Time, len(restarts))
	for _, made := range fired {
		for _, m := range made {
			for k, r := range restarts {
				if m.After(r) && (back[k].IsZero() || m.Before(back[k])) {
					back[k] = m
				}
			}
		}
	}
	for k := range restarts {
		t.Logf("restart %d: back %v after the kill", k+1, back[k].Sub(restarts[k]).Round(10*time.Millisecond))
	}
	var lates []time.Duration
	missing, twice, late := 0, 0, 0
	for id, at := range due {
		made := fired[id]
		switch {
		case len(made) == 0:
			if missing++; missing <= 5 {
				t.Errorf("%s (due %v) never fired", id, at.Format(time.StampMilli))
			}
			continue
		case len(made) > 1:
			if twice++; twice <= 5 {
				t.Errorf("%s fired %d times", id, len(made))
			}
		}
		// From its due time, or from when the evaluator was back if it
		// was due while the evaluator was away.
		from := at
		for k, r := range restarts {
			if at.Before(back[k]) && at.After(r.Add(-time.Second)) && back[k].After(from) {
				from = back[k]
			}
		}
		lag := made[0].Sub(from)
		lates = append(lates, lag)
		if lag > time.Second {
			if late++; late <= 5 {
				t.Errorf("%s fired %v after %v", id, lag.Round(time.Millisecond), from.Format(time.StampMilli))
			}
		}
	}
	if missing+twice+late > 0 {
		t.Errorf("%d never fired, %d fired more than once, %d fired more than 1s late", missing, twice, late)
	}
	if len(lates) > 0 {
		slices.Sort(lates)
		t.Logf("%d timers fired; after their due time: median %v, p99 %v, max %v", len(lates),
			lates[len(lates)/2].Round(time.Millisecond), lates[len(lates)*99/100].Round(time.Millisecond), lates[len(lates)-1].Round(time.Millisecond))
	}
}
