package eventbridgesender_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/eventbridge-sender/internal/eventbridgetest"
)

// TestKeyedOrderSurvivesSenderKill puts 1,000 keyed notifications (50
// accounts, 20 each) on a bus while the sender, a real process on the
// real broker, is killed with SIGKILL three times: every notification
// arrives, each account's first copies in the order they were produced,
// and every duplicate is the same entry as the first copy.
func TestKeyedOrderSurvivesSenderKill(t *testing.T) {
	const keys, perKey, total = 50, 20, 50 * 20
	began := time.Now()
	// A little latency keeps calls in flight when the sender dies.
	srv := eventbridgetest.New(nil, eventbridgetest.Latency(5*time.Millisecond))
	t.Cleanup(srv.Close)
	s := newStack(t)
	s.destination("bus", bus(busARN, nil))
	var notes []*notification.Notification
	for seq := range perKey {
		for k := range keys {
			notes = append(notes, note(fmt.Sprintf("acct-%02d", k), seq))
		}
	}
	s.produce("bus", true, notes)

	bin := servicetest.Build(t, "./cmd/eventbridge-sender")
	env := append(s.Env(), awsEnv(srv.URL)...)
	env = append(env,
		"HERALD_EVENTBRIDGE_GROUP="+s.Kafka.TopicPrefix+"eventbridge-sender",
		// Static membership: a restarted sender takes its partitions back
		// without waiting for the killed one's session to expire.
		"HERALD_EVENTBRIDGE_INSTANCE_ID=sender-1",
		"HERALD_RETRY_SCHEDULE=0s,50ms,100ms,200ms,400ms,800ms",
		"HERALD_DELIVERY_COMMIT_INTERVAL=200ms",
	)
	arrived := func(n int) func([]eventbridgetest.Call) bool {
		return func(calls []eventbridgetest.Call) bool {
			ids := map[string]bool{}
			for _, c := range calls {
				for _, e := range c.Entries {
					ids[detailID(e.Detail)] = true
				}
			}
			return len(ids) >= n
		}
	}
	sender := servicetest.StartProcess(t, bin, env)
	for i, at := range []int{total / 4, total / 2, 3 * total / 4} {
		if _, err := srv.Wait(time.Minute, arrived(at)); err != nil {
			t.Fatalf("before kill %d: %v", i+1, err)
		}
		sender.Kill()
		sender.Start()
	}
	calls, err := srv.Wait(time.Minute, arrived(total))
	if err != nil {
		t.Fatal(err)
	}
	l := readLedger(t, calls)
	if len(l.first) != total || len(l.keys()) != keys {
		t.Errorf("%d notifications of %d accounts arrived, want %d of %d", len(l.first), len(l.keys()), total, keys)
	}
	for _, n := range notes {
		if _, ok := l.first[n.ID]; !ok {
			t.Errorf("notification %s never arrived", n.ID)
			break
		}
	}
	l.checkOrder(t)
	entries := 0
	for _, c := range calls {
		entries += len(c.Entries)
	}
	t.Logf("%d entries in %d calls for %d notifications, %d duplicates, in %s", entries, len(calls), total, l.dups, time.Since(began).Round(time.Millisecond))
}
