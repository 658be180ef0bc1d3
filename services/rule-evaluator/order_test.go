package ruleevaluator

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/notification"
)

// TestOneEntitysNotificationsKeepTheOrderOfItsEvents writes many events of
// one entity at once, so that a single poll holds far more of one
// partition's events than one piece of judging takes: judged in parallel,
// their notifications must still be committed in the order of the events.
func TestOneEntitysNotificationsKeepTheOrderOfItsEvents(t *testing.T) {
	_, cfg := controlledFakes(t, 1)
	e := runWithRule(t, Config{Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 1000})
	const n = 5 * judgeRun
	recs := balanceDrops(t, e, n)
	admin := notificationReader(t, cfg)
	if err := admin.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var remaining []float64
	for len(remaining) < n {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		fs := admin.PollFetches(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%d of %d notifications", len(remaining), n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var note notification.Notification
			if _, err := e.base.Registry.Decode(t.Context(), r.Value, &note); err != nil {
				t.Fatal(err)
			}
			var img struct{ Remaining float64 }
			if err := json.Unmarshal([]byte(*note.New), &img); err != nil {
				t.Fatal(err)
			}
			remaining = append(remaining, img.Remaining)
		})
	}
	// Event i leaves 500 - i.
	for i, r := range remaining {
		if r != float64(500-i) {
			t.Fatalf("notification %d is of the event leaving %v, want %v: the order of the events is lost", i, r, 500-i)
		}
	}
}
