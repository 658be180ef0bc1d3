package configstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
)

// TestReplicasRacingConditionalWritesAgree runs two views of one topic, as
// two admin-API replicas do, and has both write each version of the same
// documents at once with the version they read. For every version exactly
// one write wins and the other gets ErrVersionConflict; both views, and a
// view opened afterwards, end identical; and the last record of each key,
// the one compaction keeps, is what the views hold.
func TestReplicasRacingConditionalWritesAgree(t *testing.T) {
	seeds, topic := newTopic(t)
	a, b := openStore(t, seeds, topic), openStore(t, seeds, topic)
	const rounds = 100
	ids := []string{"x", "y"}
	for _, id := range ids {
		put(t, a, doc(t, "acme", configstore.KindRule, id, rule(id+"-0")))
	}
	wins := map[string]int{}
	for round := range rounds {
		for _, id := range ids {
			// Both replicas hold the same version before they race.
			v := waitVersion(t, a, b, id)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, s := range []*configstore.Store{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := doc(t, "acme", configstore.KindRule, id, rule(fmt.Sprintf("%s-%d-%d", id, round, i)))
					_, errs[i] = s.Put(ctxTimeout(t), d, v)
				}()
			}
			wg.Wait()
			won := 0
			for i, err := range errs {
				switch {
				case err == nil:
					won++
					wins[fmt.Sprint(i)]++
				case !errors.Is(err, configstore.ErrVersionConflict):
					t.Fatalf("round %d %s: replica %d: %v", round, id, i, err)
				}
			}
			if won != 1 {
				t.Fatalf("round %d %s: %d writes of version %d won, want exactly one", round, id, won, v+1)
			}
		}
	}
	// A conditional delete races an update the same way.
	v := waitVersion(t, a, b, "x")
	var wg sync.WaitGroup
	var delErr, putErr error
	wg.Add(2)
	go func() { defer wg.Done(); delErr = a.DeleteVersion(ctxTimeout(t), "acme", configstore.KindRule, "x", v) }()
	go func() {
		defer wg.Done()
		_, putErr = b.Put(ctxTimeout(t), doc(t, "acme", configstore.KindRule, "x", rule("x-last")), v)
	}()
	wg.Wait()
	if (delErr == nil) == (putErr == nil) {
		t.Fatalf("delete and update of version %d: %v and %v, want exactly one to win", v, delErr, putErr)
	}

	late := openStore(t, seeds, topic)
	for _, s := range []*configstore.Store{a, b, late} {
		if err := s.WaitCaughtUp(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
	}
	last := lastRecords(t, seeds, topic)
	for _, id := range ids {
		da, okA := a.Get("acme", configstore.KindRule, id)
		for name, s := range map[string]*configstore.Store{"second replica": b, "late view": late} {
			d, ok := s.Get("acme", configstore.KindRule, id)
			if ok != okA || ok && (d.Version != da.Version || string(d.Spec) != string(da.Spec)) {
				t.Errorf("%s: %s is (%v, v%d %s), first replica has (%v, v%d %s)", name, id, ok, d.Version, d.Spec, okA, da.Version, da.Spec)
			}
		}
		rec := last["acme/rule/"+id]
		switch {
		case !okA && rec != nil && rec.Value != nil:
			t.Errorf("%s is deleted but the key's last record is not a tombstone", id)
		case okA:
			var kept struct {
				Version int64           `json:"version"`
				Spec    json.RawMessage `json:"spec"`
			}
			if rec == nil || json.Unmarshal(rec.Value, &kept) != nil || kept.Version != da.Version || string(kept.Spec) != string(da.Spec) {
				t.Errorf("%s: the key's last record is not the document every view holds (v%d)", id, da.Version)
			}
		}
	}
	t.Logf("wins by replica over %d races: %v", 2*rounds, wins)
}

// waitVersion waits until both views hold the same version of id and
// returns it.
func waitVersion(t *testing.T, a, b *configstore.Store, id string) int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		da, _ := a.Get("acme", configstore.KindRule, id)
		db, _ := b.Get("acme", configstore.KindRule, id)
		if da.Version == db.Version {
			return da.Version
		}
		if time.Now().After(deadline) {
			t.Fatalf("views of %s stay apart: v%d and v%d", id, da.Version, db.Version)
		}
		time.Sleep(time.Millisecond)
	}
}

// lastRecords reads the topic and returns the last record of each key.
func lastRecords(t *testing.T, seeds []string, topic string) map[string]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			ends[o.Partition] = o.Offset
		}
	})
	last := map[string]*kgo.Record{}
	for len(ends) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			last[string(r.Key)] = r
			if r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
		})
	}
	return last
}

// TestCreatesOfOneIDRaceToOneWinner pins Absent: of two views creating the
// same id at once, one creates it and the other is told it exists.
func TestCreatesOfOneIDRaceToOneWinner(t *testing.T) {
	seeds, topic := newTopic(t)
	a, b := openStore(t, seeds, topic), openStore(t, seeds, topic)
	for i := range 20 {
		id := fmt.Sprintf("t%d", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, s := range []*configstore.Store{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[j] = s.Put(ctxTimeout(t), doc(t, configstore.OperatorTenant, configstore.KindTenant, id, configstore.Tenant{Name: fmt.Sprint(j)}), configstore.Absent)
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("creating %s twice: %v and %v, want one to win", id, errs[0], errs[1])
		}
		if _, err := a.Put(ctxTimeout(t), doc(t, configstore.OperatorTenant, configstore.KindTenant, id, configstore.Tenant{Name: "again"}), configstore.Absent); !errors.Is(err, configstore.ErrVersionConflict) {
			t.Fatalf("creating %s once it exists: %v", id, err)
		}
	}
}
