package ruleevaluator

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSessionsShareThePartitionsAndCommitEachEventOnce runs a replica with
// two sessions on four partitions: each session must take partitions and
// commit transactions under its own transactional id, and every event must
// still yield its notification exactly once.
func TestSessionsShareThePartitionsAndCommitEachEventOnce(t *testing.T) {
	c, cfg := controlledFakes(t, 4)
	var mu sync.Mutex
	commits := map[string]int{}
	c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req := kreq.(*kmsg.EndTxnRequest); req.Commit {
			mu.Lock()
			commits[req.TransactionalID]++
			mu.Unlock()
		}
		return nil, nil, false
	})
	e := runWithRule(t, Config{Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 100, Sessions: 2})
	if len(e.sessions) != 2 {
		t.Fatalf("%d sessions, want 2", len(e.sessions))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range e.sessions {
		for s.timers.held() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("a session was never given a partition")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const n = 40
	recs := balanceDropsOf(t, e, n, n)
	admin := notificationReader(t, cfg)
	if err := admin.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	collectExactlyOnce(t, e, admin, n, 0)
	mu.Lock()
	defer mu.Unlock()
	if commits["tx"] == 0 || commits["tx-1"] == 0 {
		t.Errorf("commits by transactional id %v, want some by tx and by tx-1", commits)
	}
}

// held counts the partitions assigned, loaded or not.
func (t *timers) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.tables) + len(t.unloaded)
}
