package ruleevaluator

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestEventsArrivingDuringATransactionAllJoinTheNext holds the commit of
// the evaluator's first transaction while three more events reach the
// broker, one after another. The client fetches the first of them at once
// and asks for the other two only when a poll takes it; all three must
// still be judged and committed together, in the very next transaction,
// rather than the first alone and the other two one transaction later.
func TestEventsArrivingDuringATransactionAllJoinTheNext(t *testing.T) {
	c, cfg := controlledFakes(t, 1)
	var armed atomic.Bool
	var commits atomic.Int32
	holding, release := make(chan struct{}), make(chan struct{})
	c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !armed.Load() || !kreq.(*kmsg.EndTxnRequest).Commit {
			return nil, nil, false
		}
		if commits.Add(1) == 1 {
			close(holding)
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	e := runWithRule(t, Config{
		Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 100,
		// Far more than the round trip to kfake: the test shows what is
		// gathered, not how fast.
		GatherWait: 2 * time.Second,
	})
	recs := balanceDrops(t, e, 4)
	admin := notificationReader(t, cfg)
	ctx := t.Context()

	armed.Store(true)
	if err := admin.ProduceSync(ctx, recs[0]).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-holding:
	case <-time.After(30 * time.Second):
		t.Fatal("the evaluator never committed the first event")
	}
	for _, r := range recs[1:] {
		if err := admin.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	collectExactlyOnce(t, e, admin, len(recs), 0)
	if n := commits.Load(); n != 2 {
		t.Errorf("the four events took %d transactions, want 2: the first, then the three that came during it", n)
	}
}
