package ruleevaluator

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/heraldhq/herald/pkg/event"
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
	var recs []*kgo.Record
	for i := range n {
		acct, id := fmt.Sprintf("acct-%d", i), fmt.Sprintf("bal-%d", i)
		key, value, err := event.Encode(t.Context(), e.base.Registry, e.base.Topics.Events, "acme", &event.Event{
			EntityType: "Balance", EntityID: id, Operation: "UPDATE", AccountID: &acct,
			Old: map[string]any{"id": id, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 0.0, "remaining": 600.0},
			New: map[string]any{"id": id, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 0.0, "remaining": 500.0},
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: e.base.Topics.Events, Key: key, Value: value})
	}
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
