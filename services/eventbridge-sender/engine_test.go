package eventbridgesender_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/peertest"
	"github.com/heraldhq/herald/services/eventbridge-sender/internal/eventbridgetest"
)

// TestNotificationsReachTheBusThroughTheEngine runs the sender on the real
// broker against moto: keyed notifications in Totogi's format and
// unordered ones in the native format arrive on the bus, and through its
// rule in the queue, with the source, detail-type and detail they should
// have.
func TestNotificationsReachTheBusThroughTheEngine(t *testing.T) {
	m := peertest.StartMoto(t)
	b := m.QueuedBus(t, "eu-west-1", "notifications")
	setAWSEnv(t, m.URL)
	s := newStack(t)
	s.destination("totogi", bus(b.ARN, nil))
	s.destination("native", bus(b.ARN, func(d *configstore.EventBridgeDestination) {
		d.Source, d.DetailType, d.Format = "com.example.billing", "Balance notice", notification.FormatNative
	}))
	var keyed, unordered []*notification.Notification
	for i := range 10 {
		keyed = append(keyed, note(fmt.Sprintf("acct-%d", i%3), i))
		unordered = append(unordered, note(fmt.Sprintf("acct-u%d", i), 100+i))
	}
	s.produce("totogi", true, keyed)
	s.produce("native", false, unordered)
	s.runSender(s.senderConfig("0s,50ms,100ms"))

	events := b.Receive(t, 20, time.Minute)
	byID := map[string]peertest.BusEvent{}
	for _, e := range events {
		byID[detailID(string(e.Detail))] = e
	}
	for _, n := range keyed {
		checkEvent(t, byID[n.ID], n, "herald.notifications", n.Name, notification.FormatTotogi)
	}
	for _, n := range unordered {
		checkEvent(t, byID[n.ID], n, "com.example.billing", "Balance notice", notification.FormatNative)
	}
	if len(byID) != 20 {
		t.Errorf("%d notifications on the bus, want 20", len(byID))
	}
}

// TestOnlyFailedEntriesAreSentAgain: of 30 notifications, a third are
// throttled entry by entry the first time and six have a malformed detail.
// The throttled ones are sent a second time and delivered, the malformed
// ones go to the dead-letter topic with EventBridge's error code, and the
// rest, in the same calls, are sent once.
func TestOnlyFailedEntriesAreSentAgain(t *testing.T) {
	var notes []*notification.Notification
	malformed, throttled := map[string]bool{}, map[string]bool{}
	for i := range 30 {
		n := note(fmt.Sprintf("acct-%02d", i), i)
		notes = append(notes, n)
		switch i % 5 {
		case 0:
			malformed[n.ID] = true
		case 1, 2:
			throttled[n.ID] = true
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	srv := eventbridgetest.New(func(_ int, c eventbridgetest.Call) eventbridgetest.Reply {
		mu.Lock()
		defer mu.Unlock()
		var r eventbridgetest.Reply
		for _, e := range c.Entries {
			id := detailID(e.Detail)
			seen[id]++
			code := ""
			switch {
			case malformed[id]:
				code = "MalformedDetail"
			case throttled[id] && seen[id] == 1:
				code = "ThrottlingException"
			}
			r.EntryCodes = append(r.EntryCodes, code)
		}
		return r
	})
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	s := newStack(t)
	s.destination("bus", bus(busARN, nil))
	s.produce("bus", false, notes)
	c := s.senderConfig("0s,50ms,100ms,200ms")
	c.Linger = 20 * time.Millisecond
	s.runSender(c)

	dead := s.deadLetters(len(malformed), time.Minute)
	if len(dead) != len(malformed) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(malformed))
	}
	for _, r := range dead {
		n := s.decode(r.Value)
		if !malformed[n.ID] || header(r, delivery.HeaderErrorClass) != "MalformedDetail" || header(r, delivery.HeaderDestination) != "bus" {
			t.Errorf("dead letter %s: class %q, destination %q; want only the malformed ones, class MalformedDetail",
				n.ID, header(r, delivery.HeaderErrorClass), header(r, delivery.HeaderDestination))
		}
	}
	accepted := func(calls []eventbridgetest.Call) map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for id, k := range seen {
			if !malformed[id] && (!throttled[id] || k > 1) {
				out[id] = k
			}
		}
		return out
	}
	calls, err := srv.Wait(time.Minute, func(calls []eventbridgetest.Call) bool { return len(accepted(calls)) == len(notes)-len(malformed) })
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range notes {
		want := 1
		if throttled[n.ID] {
			want = 2
		}
		if seen[n.ID] != want {
			t.Errorf("notification %s (throttled %v, malformed %v) sent %d times, want %d", n.ID, throttled[n.ID], malformed[n.ID], seen[n.ID], want)
		}
	}
	entries := 0
	for _, c := range calls {
		entries += len(c.Entries)
	}
	t.Logf("%d entries in %d calls", entries, len(calls))
}

// sentNote is the first copy of a notification the stand-in accepted.
type sentNote struct {
	key    string
	seq    int
	detail string
}

// ledger reads the stand-in's calls: the first accepted copy of each
// notification, in order of arrival, and the duplicates.
type ledger struct {
	first map[string]sentNote
	order []string // ids, in order of first arrival
	dups  int
}

func readLedger(t *testing.T, calls []eventbridgetest.Call) ledger {
	t.Helper()
	l := ledger{first: map[string]sentNote{}}
	for _, c := range calls {
		for _, e := range c.Entries {
			var d struct {
				NotificationID string `json:"notificationid"`
				EventData      struct {
					Info struct {
						Fields struct {
							Key string `json:"key"`
							Seq int    `json:"seq"`
						} `json:"notificationfields"`
					} `json:"notificationInformation"`
				} `json:"eventdata"`
			}
			if err := json.Unmarshal([]byte(e.Detail), &d); err != nil {
				t.Fatalf("detail %s: %v", e.Detail, err)
			}
			if f, ok := l.first[d.NotificationID]; ok {
				l.dups++
				if f.detail != e.Detail {
					t.Errorf("a duplicate of %s has another detail", d.NotificationID)
				}
				continue
			}
			l.first[d.NotificationID] = sentNote{key: d.EventData.Info.Fields.Key, seq: d.EventData.Info.Fields.Seq, detail: e.Detail}
			l.order = append(l.order, d.NotificationID)
		}
	}
	return l
}

// checkOrder fails the test unless each key's notifications first arrived
// in sequence order, from 0.
func (l ledger) checkOrder(t *testing.T) {
	t.Helper()
	next := map[string]int{}
	inversions := 0
	for _, id := range l.order {
		s := l.first[id]
		if s.seq != next[s.key] {
			inversions++
			if inversions <= 5 {
				t.Errorf("%s: #%d arrived when #%d was next", s.key, s.seq, next[s.key])
			}
		}
		next[s.key] = s.seq + 1
	}
	if inversions > 0 {
		t.Errorf("%d order inversions", inversions)
	}
}

// keys returns the keys in the ledger, sorted.
func (l ledger) keys() []string {
	var out []string
	for _, s := range l.first {
		if !slices.Contains(out, s.key) {
			out = append(out, s.key)
		}
	}
	slices.Sort(out)
	return out
}
