package delivery_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
)

var errUnavailable = errors.New("503 Service Unavailable")

// retry answers an attempt with a failure that may pass.
func retry() reply { return fail(delivery.RetryError("status", errUnavailable)) }

// TestKeyedOrderHoldsThroughInMemoryRetries: while a keyed delivery is
// retried in memory, the key's later notifications wait behind it and
// then arrive in order; the retries follow the schedule, and nothing goes
// through the retry topic.
func TestKeyedOrderHoldsThroughInMemoryRetries(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.ch.answer(func(c call) reply {
		if c.key == "k" && c.seq == 1 && c.attempt < 3 {
			return retry()
		}
		return reply{}
	})
	s.start("a", "", s.config("0s,1s,1s,1s"))
	s.produce(keyed("k", 0, 5, "d")...)

	s.advanceUntil("k#0…4 delivered", 100*time.Millisecond, func() bool { return len(s.ch.firstDeliveries("d")["k"]) == 5 })
	checkLane(t, s.ch.snapshot(), "d", "k", 5)
	tries := s.ch.of("d", "k", 1)
	if len(tries) != 3 {
		t.Fatalf("k#1 was tried %d times, want 2 failures and a success", len(tries))
	}
	for i := 1; i < len(tries); i++ {
		if gap := tries[i].at.Sub(tries[i-1].at); gap < time.Duration(float64(time.Second)*(1-delivery.Jitter)) {
			t.Errorf("attempt %d of k#1 came %s after the one before, want the schedule's 1s less the jitter", i+1, gap)
		}
	}
	if n := s.count(s.topics.Retry); n != 0 {
		t.Errorf("%d records in the retry topic, want none: waits of a second stay in memory", n)
	}
}

// TestNotificationRenderedOncePerFormat: a notification's destinations
// and its attempts, retries included, get the payload rendered once.
func TestNotificationRenderedOncePerFormat(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d1", nil)
	s.destination("d2", nil)
	s.ch.answer(func(c call) reply {
		if c.dest == "d1" && c.attempt < 3 {
			return retry()
		}
		return reply{}
	})
	s.start("a", "", s.config("0s,1s,1s,1s"))
	s.produce(unordered("k", 0, 2, "d1", "d2")...)

	s.advanceUntil("k#0 and k#1 delivered to d1 and d2", 100*time.Millisecond, func() bool {
		return s.ch.delivered("d1", "k", 0) && s.ch.delivered("d1", "k", 1) && s.ch.delivered("d2", "k", 0) && s.ch.delivered("d2", "k", 1)
	})
	for seq := range 2 {
		calls := append(s.ch.of("d1", "k", seq), s.ch.of("d2", "k", seq)...)
		if len(calls) != 4 {
			t.Fatalf("k#%d had %d attempts, want 3 at d1 and 1 at d2", seq, len(calls))
		}
		for _, c := range calls[1:] {
			if c.body != calls[0].body {
				t.Errorf("k#%d: attempt %d at %s got a payload rendered anew, want the first one's", seq, c.attempt, c.dest)
			}
		}
	}
	if a, b := s.ch.of("d1", "k", 0)[0].body, s.ch.of("d1", "k", 1)[0].body; a == b {
		t.Error("k#0 and k#1 got the same payload")
	}
}

// TestParkedKeyGoesThroughRetryTopicInOrder: a keyed delivery whose next
// wait is longer than RetryInMemory parks its lane: it and every later
// notification of the key, including ones written afterwards, go through
// the retry topic in order, while other keys are delivered; once due they
// arrive in order.
func TestParkedKeyGoesThroughRetryTopicInOrder(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.ch.answer(func(c call) reply {
		if c.key == "k" && c.seq == 1 && c.attempt == 1 {
			return retry()
		}
		return reply{}
	})
	c := s.config("0s,1m,1m")
	c.RetryInMemory, c.RetryHold = 10*time.Second, time.Hour
	s.start("a", "", c)
	s.produce(append(keyed("k", 0, 4, "d"), keyed("j", 0, 3, "d")...)...)
	eventually(t, "k#1…3 parked and j#0…2 delivered", func() bool {
		return s.count(s.topics.Retry) == 3 && len(s.ch.firstDeliveries("d")["j"]) == 3
	})
	s.produce(keyed("k", 4, 5, "d")...)
	eventually(t, "k#4 parked behind them", func() bool { return s.count(s.topics.Retry) == 4 })
	for seq := 2; seq <= 4; seq++ {
		if n := len(s.ch.of("d", "k", seq)); n > 0 {
			t.Errorf("k#%d was tried %d times while k#1 was parked before it", seq, n)
		}
	}
	failed := s.ch.of("d", "k", 1)[0]

	s.advanceUntil("k#0…4 delivered", 10*time.Second, func() bool { return len(s.ch.firstDeliveries("d")["k"]) == 5 })
	checkLane(t, s.ch.snapshot(), "d", "k", 5)
	checkLane(t, s.ch.snapshot(), "d", "j", 3)
	var seqs []int
	for i, r := range s.read(s.topics.Retry, 4) {
		en, err := delivery.ParseEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		n := s.decode(r.Value)
		seqs = append(seqs, seqOf(n))
		if !en.Ordered || en.Destination != "d" {
			t.Errorf("retry entry %d: %+v, want a parked delivery to d", i, en)
		}
		if i == 0 {
			lo, hi := failed.at.Add(time.Duration(float64(time.Minute)*(1-delivery.Jitter))), failed.at.Add(time.Duration(float64(time.Minute)*(1+delivery.Jitter)))
			if en.Attempts != 1 || en.Due.Before(lo) || en.Due.After(hi) {
				t.Errorf("the failed delivery was parked with %d attempts, due %s; want 1, due a minute after it failed at %s", en.Attempts, en.Due, failed.at)
			}
		} else if en.Attempts != 0 || !en.Due.IsZero() {
			t.Errorf("k#%d was parked with %d attempts, due %s; want none, due at once", seqOf(n), en.Attempts, en.Due)
		}
	}
	if !slices.Equal(seqs, []int{1, 2, 3, 4}) {
		t.Errorf("parked in the order %v, want k#1…4 in order", seqs)
	}
}

// TestParkedKeyResumesInOrderAfterRestart: an engine that ends, stopped
// or killed, with a lane parked and a delivery under way, and a new one
// started in its place, deliver every notification, each key's first
// deliveries in order, the parked ones and the one under way included.
func TestParkedKeyResumesInOrderAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(a *engine, underway *gate)
	}{
		{"stopped", func(a *engine, underway *gate) {
			// The attempt under way fails as a timeout would, its retry
			// waiting in memory on the clock, which the test holds: the
			// engine stops with that delivery unfinished.
			underway.release(delivery.RetryAfterError("timeout", 5*time.Second, errors.New("no answer")))
			a.stop()
		}},
		{"killed", func(a *engine, _ *gate) { a.kill() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, 1)
			s.destination("d", nil)
			underway := newGate()
			s.ch.answer(func(c call) reply {
				switch {
				case c.engine == "a" && c.key == "k" && c.seq == 1 && c.attempt == 1:
					return retry()
				case c.engine == "a" && c.key == "j" && c.seq == 0:
					return holdOn(underway)
				}
				return reply{}
			})
			c := s.config("0s,1m,1m")
			c.RetryInMemory, c.RetryHold = 10*time.Second, time.Hour
			// Only the end commits, if it can: a killed engine leaves
			// every offset to the next one.
			c.CommitInterval = time.Hour
			a := s.start("a", "sender-1", c)
			s.produce(append(keyed("k", 0, 4, "d"), keyed("j", 0, 3, "d")...)...)
			eventually(t, "k#1…3 parked and j#0 under way", func() bool {
				return s.count(s.topics.Retry) == 3 && len(s.ch.of("d", "j", 0)) == 1 && s.ch.delivered("d", "k", 0)
			})
			// k#0's and k#1's attempts are written too: the engine ends
			// with every write acknowledged but j#0's to come.
			s.attempts(2)

			tc.end(a, underway)
			ended := len(s.ch.snapshot())
			s.start("b", "sender-1", c)
			s.produce(append(keyed("k", 4, 5, "d"), keyed("j", 3, 4, "d")...)...)
			s.advanceUntil("every notification delivered", 10*time.Second, func() bool {
				got := s.ch.firstDeliveries("d")
				return len(got["k"]) == 5 && len(got["j"]) == 4
			})
			calls := s.ch.snapshot()
			checkLane(t, calls, "d", "k", 5)
			checkLane(t, calls, "d", "j", 4)
			for _, c := range calls[ended:] {
				if c.engine != "b" {
					t.Errorf("engine %s tried %s#%d after it ended", c.engine, c.key, c.seq)
				}
			}
			if !slices.ContainsFunc(calls[ended:], func(c call) bool { return c.key == "j" && c.seq == 0 && c.ok }) {
				t.Error("j#0, under way when the engine ended, was not delivered by the next")
			}
		})
	}
}

// TestUnorderedRetryBlocksNothing: an unordered delivery waiting in the
// retry topic holds up nothing, neither the other notifications of its key
// nor other keys; it is delivered when due.
func TestUnorderedRetryBlocksNothing(t *testing.T) {
	s := newStack(t, 1)
	s.destination("u", nil)
	s.ch.answer(func(c call) reply {
		if c.key == "k" && c.seq == 0 && c.attempt == 1 {
			return retry()
		}
		return reply{}
	})
	c := s.config("0s,1m")
	c.RetryInMemory, c.RetryHold = 10*time.Second, time.Hour
	s.start("a", "", c)
	s.produce(append(unordered("k", 0, 5, "u"), unordered("j", 0, 3, "u")...)...)
	eventually(t, "k#0 in the retry topic and the others delivered", func() bool {
		got := s.ch.firstDeliveries("u")
		return s.count(s.topics.Retry) == 1 && len(got["k"]) == 4 && len(got["j"]) == 3
	})
	if n := len(s.ch.of("u", "k", 0)); n != 1 {
		t.Fatalf("k#0 tried %d times before its wait was over, want once", n)
	}
	en, err := delivery.ParseEntry(s.read(s.topics.Retry, 1)[0])
	if err != nil || en.Ordered || en.Attempts != 1 {
		t.Errorf("retry entry %+v, %v; want an unordered delivery after 1 attempt", en, err)
	}
	s.advanceUntil("k#0 delivered", 10*time.Second, func() bool { return s.ch.delivered("u", "k", 0) })
	if n := len(s.ch.of("u", "k", 0)); n != 2 {
		t.Errorf("k#0 tried %d times, want a failure and a success", n)
	}
}

// TestSlowDestinationLeavesOthersTheProcessSlots: a destination whose
// attempts hang holds at most its own bound of the process's attempt
// slots, however many of its deliveries wait; another destination's
// notification, read after them all, is delivered meanwhile.
func TestSlowDestinationLeavesOthersTheProcessSlots(t *testing.T) {
	const waiting = 12
	s := newStack(t, 1)
	s.destination("slow", func(d *configstore.Destination) { d.Concurrency = 2 })
	s.destination("fast", nil)
	hung := newGate()
	defer hung.release(nil)
	s.ch.answer(func(c call) reply {
		if c.dest == "slow" {
			return holdOn(hung)
		}
		return reply{}
	})
	c := s.config("0s")
	c.Concurrency = 4
	s.start("a", "", c)
	var notes []note
	for k := range waiting {
		notes = append(notes, unordered(fmt.Sprintf("acct-%02d", k), 0, 1, "slow")...)
	}
	s.produce(notes...)
	hanging := func() int {
		n := 0
		for _, c := range s.ch.snapshot() {
			if c.dest == "slow" {
				n++
			}
		}
		return n
	}
	eventually(t, "the hung destination's bound of attempts under way", func() bool { return hanging() == 2 })
	s.produce(unordered("acct-fast", 0, 1, "fast")...)
	eventually(t, "the fast destination's notification delivered", func() bool { return s.ch.delivered("fast", "acct-fast", 0) })
	if n := hanging(); n != 2 {
		t.Errorf("%d attempts to the hung destination, want its bound of 2", n)
	}
}

// TestOtherKeysKeepFlowingWhileOneKeyRetries: while one key's delivery
// waits for its retry, every notification of the other keys of the same
// partition and destination is delivered, and none of the waiting key's
// later ones; then the waiting key's arrive in order.
func TestOtherKeysKeepFlowingWhileOneKeyRetries(t *testing.T) {
	const keys, per, failing = 20, 5, "acct-07"
	s := newStack(t, 1)
	s.destination("d", nil)
	s.ch.answer(func(c call) reply {
		if c.key == failing && c.seq == 0 && c.attempt == 1 {
			return retry()
		}
		return reply{}
	})
	s.start("a", "", s.config("0s,5s"))
	var notes []note
	for seq := range per {
		for k := range keys {
			notes = append(notes, keyed(fmt.Sprintf("acct-%02d", k), seq, seq+1, "d")...)
		}
	}
	s.produce(notes...)
	eventually(t, "the other keys delivered", func() bool {
		got := s.ch.firstDeliveries("d")
		n := 0
		for k, seqs := range got {
			if k != failing {
				n += len(seqs)
			}
		}
		return n == (keys-1)*per
	})
	for _, c := range s.ch.snapshot() {
		if c.key == failing && (c.seq > 0 || c.attempt > 1) {
			t.Errorf("%s#%d attempt %d made while %s#0 waits for its retry", failing, c.seq, c.attempt, failing)
		}
	}
	s.advanceUntil(failing+" delivered", time.Second, func() bool { return len(s.ch.firstDeliveries("d")[failing]) == per })
	calls := s.ch.snapshot()
	for k := range keys {
		checkLane(t, calls, "d", fmt.Sprintf("acct-%02d", k), per)
	}
}

// TestCommitsStopAtUnfinishedRecord: with a delivery under way, the
// group's committed offset of its partition stays at it while later
// records finish; when a second engine joins and takes the partition, the
// first commits no further on revoke, and the second delivers the record
// again and loses nothing after it.
func TestCommitsStopAtUnfinishedRecord(t *testing.T) {
	s := newStack(t, 2)
	s.destination("d", nil)
	underway := newGate()
	s.ch.answer(func(c call) reply {
		if c.engine == "a" && c.key == "blocked" {
			return holdOn(underway)
		}
		return reply{}
	})
	// The range balancer orders static members by instance id: a keeps
	// partition 0, b takes partition 1.
	s.start("a", "a", s.config("0s,5s"))
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("acct-%d", i))
	}
	before := s.produceOnePerKey(keys, 0)
	if !slices.ContainsFunc(before, func(r *kgo.Record) bool { return r.Partition == 1 }) {
		t.Fatal("no key of the test in partition 1")
	}
	blocked := s.produceTo(1, "blocked", keyed("blocked", 0, 2, "d"))
	after := s.produceOnePerKey(keys, 1)
	eventually(t, "every record but the blocked key's delivered", func() bool {
		got := s.ch.firstDeliveries("d")
		n := 0
		for _, k := range keys {
			n += len(got[k])
		}
		return n == 2*len(keys) && len(s.ch.of("d", "blocked", 0)) == 1
	})
	s.attempts(2 * len(keys))
	eventually(t, "partition 1 committed up to the blocked record", func() bool {
		return s.committed(s.topics.Notifications, 1) == blocked[0].Offset
	})
	// A record finished on partition 0 after every later record of
	// partition 1 finished: the commit that takes it shows partition 1
	// still at the blocked record.
	marker := s.produceTo(0, "marker", keyed("marker", 0, 1, "d"))[0]
	eventually(t, "partition 0 committed past the marker", func() bool {
		return s.committed(s.topics.Notifications, 0) == marker.Offset+1
	})
	if got := s.committed(s.topics.Notifications, 1); got != blocked[0].Offset {
		t.Fatalf("partition 1 committed at %d, want %d: the blocked record's offset", got, blocked[0].Offset)
	}

	b := s.start("b", "b", s.config("0s,5s"))
	// The attempt under way ends in a failure whose retry waits in
	// memory on the clock, which the test holds: it is unfinished when
	// the partition is revoked.
	underway.release(delivery.RetryError("timeout", errors.New("no answer")))
	eventually(t, "the blocked key delivered by the engine that joined", func() bool {
		return len(s.ch.firstDeliveries("d")["blocked"]) == 2
	})
	calls := s.ch.snapshot()
	checkLane(t, calls, "d", "blocked", 2)
	committedBefore := map[string]bool{}
	for _, r := range before {
		if r.Partition == 1 {
			committedBefore[s.keyOf(r)] = true
		}
	}
	for _, c := range calls {
		if c.key == "blocked" && c.ok && c.engine != b.name {
			t.Errorf("blocked#%d delivered by %s, want by %s, the partition's next owner", c.seq, c.engine, b.name)
		}
		if c.engine == b.name && c.seq == 0 && committedBefore[c.key] {
			t.Errorf("%s#0, committed before the rebalance, delivered again by %s", c.key, c.engine)
		}
	}
	for _, r := range after {
		if !s.ch.delivered("d", s.keyOf(r), 1) {
			t.Errorf("%s#1 lost", s.keyOf(r))
		}
	}
	ends, err := s.adm.ListEndOffsets(t.Context(), s.topics.Notifications)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(s.topics.Notifications, 1)
	eventually(t, "partition 1 committed to its end", func() bool { return s.committed(s.topics.Notifications, 1) == end.Offset })
}

// TestDeadLetterAfterLastAttemptOrPermanentFailure: a delivery that fails
// its last scheduled attempt, or fails permanently at once, goes to the
// channel's dead-letter topic with the notification, why and where it came
// from; every attempt is in the deliveries topic, and the key's later
// notifications go on.
func TestDeadLetterAfterLastAttemptOrPermanentFailure(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.ch.answer(func(c call) reply {
		switch {
		case c.key == "k" && c.seq == 0:
			return retry()
		case c.key == "m" && c.seq == 0:
			return fail(delivery.PermanentError("status", errors.New("400 Bad Request")))
		}
		return reply{}
	})
	c := s.config("0s,10ms,10ms")
	c.RetryInMemory = time.Second
	s.start("a", "", c)
	recs := s.produce(append(keyed("k", 0, 2, "d"), keyed("m", 0, 2, "d")...)...)
	s.advanceUntil("k#1 and m#1 delivered", 10*time.Millisecond, func() bool {
		return s.ch.delivered("d", "k", 1) && s.ch.delivered("d", "m", 1)
	})
	if n := len(s.ch.of("d", "k", 0)); n != 3 {
		t.Errorf("k#0 tried %d times, want the schedule's 3", n)
	}
	if n := len(s.ch.of("d", "m", 0)); n != 1 {
		t.Errorf("m#0 tried %d times, want once: a permanent failure is not retried", n)
	}
	dead := s.read(s.topics.DLQ, 2)
	if len(dead) != 2 || string(dead[0].Key) == string(dead[1].Key) {
		t.Fatalf("%d dead letters, want k#0 and m#0", len(dead))
	}
	want := []struct {
		rec      *kgo.Record
		attempts int
		err      string
	}{{recs[0], 3, errUnavailable.Error()}, {recs[2], 1, "400 Bad Request"}}
	for i, w := range want {
		r := dead[slices.IndexFunc(dead, func(r *kgo.Record) bool { return string(r.Key) == string(w.rec.Key) })]
		h := headers(r)
		origin := fmt.Sprintf("%s/%d/%d", w.rec.Topic, w.rec.Partition, w.rec.Offset)
		if string(r.Value) != string(w.rec.Value) || string(r.Key) != string(w.rec.Key) {
			t.Errorf("dead letter %d does not carry the notification as written", i)
		}
		if h[delivery.HeaderErrorClass] != "status" || h[delivery.HeaderError] != w.err || h[delivery.HeaderOrigin] != origin ||
			h[delivery.HeaderAttempt] != fmt.Sprint(w.attempts) || h[delivery.HeaderDestination] != "d" {
			t.Errorf("dead letter %d headers %v, want class status, error %q, origin %s, %d attempts, destination d", i, h, w.err, origin, w.attempts)
		}
	}
	got := map[string][]string{}
	for _, a := range s.attempts(6) {
		sum := fmt.Sprintf("%d %s", a.Attempt, a.Outcome)
		if a.StatusCode != nil {
			sum += fmt.Sprintf(" %d", *a.StatusCode)
		}
		if a.NextAttemptAt != nil {
			sum += " next"
		}
		if a.DeadLettered {
			sum += " dead"
		}
		got[a.NotificationID] = append(got[a.NotificationID], sum)
	}
	for id, w := range map[string][]string{
		noteID("k", 0): {"1 retry 500 next", "2 retry 500 next", "3 retry 500 dead"},
		noteID("k", 1): {"1 delivered 200"},
		noteID("m", 0): {"1 permanent 500 dead"},
		noteID("m", 1): {"1 delivered 200"},
	} {
		if !slices.Equal(got[id], w) {
			t.Errorf("attempts of %s recorded as %q, want %q", id, got[id], w)
		}
	}
}

// TestRetryAfterReplacesScheduledWait: the wait an endpoint asks for
// replaces the schedule's, in memory and through the retry topic, and is
// recorded as the next attempt's time.
func TestRetryAfterReplacesScheduledWait(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.ch.answer(func(c call) reply {
		if c.attempt > 1 {
			return reply{}
		}
		switch c.key {
		case "k":
			return fail(delivery.RetryAfterError("status", 30*time.Second, errors.New("429 Too Many Requests")))
		case "m":
			return fail(delivery.RetryAfterError("status", 5*time.Minute, errors.New("429 Too Many Requests")))
		}
		return reply{}
	})
	c := s.config("0s,1s,1h")
	c.RetryInMemory, c.RetryHold = time.Minute, time.Hour
	s.start("a", "", c)
	s.produce(keyed("k", 0, 1, "d")...)
	eventually(t, "k#0 tried", func() bool { return len(s.ch.of("d", "k", 0)) == 1 })
	first := s.ch.of("d", "k", 0)[0].at
	eventually(t, "the engine waiting 30s for k#0", func() bool { return s.waitingUntil(first.Add(30 * time.Second)) })
	s.clock.Advance(30 * time.Second)
	eventually(t, "k#0 delivered", func() bool { return s.ch.delivered("d", "k", 0) })
	if at := s.ch.of("d", "k", 0)[1].at; !at.Equal(first.Add(30 * time.Second)) {
		t.Errorf("k#0 retried %s after it failed, want 30s", at.Sub(first))
	}

	s.produce(keyed("m", 0, 1, "d")...)
	eventually(t, "m#0 in the retry topic", func() bool { return s.count(s.topics.Retry) == 1 })
	failed := s.ch.of("d", "m", 0)[0].at
	en, err := delivery.ParseEntry(s.read(s.topics.Retry, 1)[0])
	if err != nil || !en.Due.Equal(failed.Add(5*time.Minute)) {
		t.Fatalf("m#0 in the retry topic due %s (%v), want 5m after it failed at %s", en.Due, err, failed)
	}
	eventually(t, "the engine waiting 5m for m#0", func() bool { return s.waitingUntil(failed.Add(5 * time.Minute)) })
	s.clock.Advance(5 * time.Minute)
	eventually(t, "m#0 delivered", func() bool { return s.ch.delivered("d", "m", 0) })

	want := map[string]time.Duration{noteID("k", 0): 30 * time.Second, noteID("m", 0): 5 * time.Minute}
	for _, a := range s.attempts(4) {
		if a.Attempt != 1 {
			continue
		}
		if a.NextAttemptAt == nil || a.NextAttemptAt.Sub(a.StartedAt) != want[a.NotificationID] {
			t.Errorf("%s: first attempt at %s recorded the next at %v, want %s later", a.NotificationID, a.StartedAt, a.NextAttemptAt, want[a.NotificationID])
		}
	}
}

// TestFailingDestinationIsDisabled: a destination that fails without a
// success for DisableAfter over DisableMinAttempts attempts is disabled in
// the configuration, the tenant's operational destination is told with a
// DestinationDisabled notification, and deliveries to it are skipped into
// the dead-letter topic without an attempt.
func TestFailingDestinationIsDisabled(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.destination("ops", func(d *configstore.Destination) { d.Operational = true })
	s.ch.answer(func(c call) reply {
		if c.dest == "d" {
			return retry()
		}
		return reply{}
	})
	c := s.config("0s,30m,30m,30m,30m,30m,30m")
	c.RetryInMemory, c.RetryHold = time.Hour, 2*time.Hour
	c.DisableAfter, c.DisableMinAttempts = time.Hour, 3
	s.start("a", "", c)
	s.produce(keyed("k", 0, 1, "d")...)
	// The clock stops at the first attempt that fails an hour after the
	// first, the third or later: the engine must disable d then, while
	// k#0 waits for its next attempt.
	s.advanceUntil("d failing for an hour over 3 attempts", 5*time.Minute, func() bool {
		tries := s.ch.of("d", "k", 0)
		return len(tries) >= 3 && tries[len(tries)-1].at.Sub(tries[0].at) >= time.Hour
	})
	eventually(t, "d disabled", func() bool { return s.disabled("d") != nil })
	if d := s.disabled("d"); !strings.Contains(d.Reason, "failing without a success") {
		t.Errorf("disabled because %q", d.Reason)
	}
	checkTold(t, s, "d")
	s.advanceUntil("k#0 dead-lettered", 5*time.Minute, func() bool { return s.count(s.topics.DLQ) == 1 })
	tried := len(s.ch.of("d", "k", 0))

	s.produce(keyed("k", 1, 2, "d")...)
	eventually(t, "k#1 dead-lettered", func() bool { return s.count(s.topics.DLQ) == 2 })
	if n := len(s.ch.of("d", "k", 1)); n != 0 {
		t.Errorf("k#1 tried %d times at a disabled destination", n)
	}
	if n := len(s.ch.of("d", "k", 0)); n != tried {
		t.Errorf("k#0 tried %d more times after it was dead-lettered", n-tried)
	}
	for i, r := range s.read(s.topics.DLQ, 2) {
		if h := headers(r); h[delivery.HeaderErrorClass] != "disabled" {
			t.Errorf("dead letter %d has class %q, want disabled", i, h[delivery.HeaderErrorClass])
		}
	}
	skipped := 0
	// k#0's failures, its skip, k#1's skip and the notice to ops.
	for _, a := range s.attempts(tried + 3) {
		if a.Outcome == delivery.OutcomeSkipped && a.DeadLettered {
			skipped++
		}
	}
	if skipped != 2 {
		t.Errorf("%d skipped attempts recorded, want k#0's last and k#1", skipped)
	}
}

// TestGoneDestinationIsDisabledAtOnce: an endpoint that answers it is gone
// disables its destination on the first attempt, tells the operational
// destination, and later deliveries to it are skipped.
func TestGoneDestinationIsDisabledAtOnce(t *testing.T) {
	s := newStack(t, 1)
	s.destination("g", nil)
	s.destination("ops", func(d *configstore.Destination) { d.Operational = true })
	s.ch.answer(func(c call) reply {
		if c.dest == "g" {
			return fail(delivery.GoneError("status", errors.New("410 Gone")))
		}
		return reply{}
	})
	s.start("a", "", s.config("0s,1s,1s"))
	s.produce(keyed("k", 0, 1, "g")...)
	eventually(t, "g disabled", func() bool { return s.disabled("g") != nil })
	if d := s.disabled("g"); !strings.Contains(d.Reason, "gone") || !strings.Contains(d.Reason, "410 Gone") {
		t.Errorf("disabled because %q", d.Reason)
	}
	checkTold(t, s, "g")
	s.produce(keyed("k", 1, 2, "g")...)
	eventually(t, "k#0 and k#1 dead-lettered", func() bool { return s.count(s.topics.DLQ) == 2 })
	if n, m := len(s.ch.of("g", "k", 0)), len(s.ch.of("g", "k", 1)); n != 1 || m != 0 {
		t.Errorf("k#0 tried %d times and k#1 %d, want once and never", n, m)
	}
	var classes []string
	for _, r := range s.read(s.topics.DLQ, 2) {
		classes = append(classes, headers(r)[delivery.HeaderErrorClass])
	}
	if !slices.Equal(classes, []string{"status", "disabled"}) {
		t.Errorf("dead letters of classes %v, want status (the gone answer) then disabled", classes)
	}
}

// TestUnreadableRecordIsDeadLettered: bytes on the notifications topic
// that do not decode go to the dead-letter topic with class unreadable and
// where they came from, and the partition moves on past them.
func TestUnreadableRecordIsDeadLettered(t *testing.T) {
	s := newStack(t, 1)
	s.destination("d", nil)
	s.start("a", "", s.config("0s"))
	s.produce(keyed("k", 0, 1, "d")...)
	bad := s.record("k", []byte("not avro"))
	if err := s.cl.ProduceSync(t.Context(), bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	last := s.produce(keyed("k", 1, 2, "d")...)[0]
	eventually(t, "k#0 and k#1 delivered", func() bool { return len(s.ch.firstDeliveries("d")["k"]) == 2 })
	dead := s.read(s.topics.DLQ, 1)
	h := headers(dead[0])
	if string(dead[0].Value) != "not avro" || h[delivery.HeaderErrorClass] != "unreadable" || h[delivery.HeaderError] == "" ||
		h[delivery.HeaderOrigin] != fmt.Sprintf("%s/%d/%d", bad.Topic, bad.Partition, bad.Offset) {
		t.Errorf("dead letter %q with headers %v, want the bytes, class unreadable, the error and the origin", dead[0].Value, h)
	}
	eventually(t, "the partition committed past every record", func() bool {
		return s.committed(s.topics.Notifications, 0) == last.Offset+1
	})
}

// checkLane fails the test unless the first deliveries of key's
// notifications 0…n-1 to dest came in order and no attempt at one began
// before the one before it was delivered.
func checkLane(t *testing.T, calls []call, dest, key string, n int) {
	t.Helper()
	delivered := map[int]bool{}
	var first []int
	for _, c := range calls {
		if c.dest != dest || c.key != key {
			continue
		}
		if c.seq > 0 && !delivered[c.seq-1] {
			t.Errorf("%s#%d attempt %d began before %s#%d was delivered", key, c.seq, c.attempt, key, c.seq-1)
		}
		if c.ok && !delivered[c.seq] {
			delivered[c.seq] = true
			first = append(first, c.seq)
		}
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(first, want) {
		t.Errorf("%s to %s: first deliveries %v, want %v", key, dest, first, want)
	}
}

// checkTold fails the test unless the operational destination got the
// DestinationDisabled notification of dest.
func checkTold(t *testing.T, s *stack, dest string) {
	t.Helper()
	eventually(t, "ops told that "+dest+" is disabled", func() bool {
		return slices.ContainsFunc(s.ch.snapshot(), func(c call) bool {
			return c.dest == "ops" && c.ok && c.name == delivery.DestinationDisabled && c.fields["destinationId"] == `"`+dest+`"`
		})
	})
}
