package ruleevaluator

import (
	"fmt"
	"testing"
)

// BenchmarkEvaluate measures one Balance event, from its wire-format bytes
// through the registry's cached schema, generic Avro decode, the index and
// every rule that watches it. None of the rules fires, so the figure is the
// cost of judging an event, not of writing a notification. rules=0 is the
// baseline of the same run: the event decoded and looked up, no rule run.
// BenchmarkEvaluateFires is the other side: one of 10 rules fires, and its
// notification is built and encoded.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{0, 1, 10, 100} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			// Thresholds from 1% to 20% of the total: the event (60% →
			// 50%) crosses none of them.
			benchThresholds(b, n, "new.remaining < new.total * %[1]g && old.remaining >= old.total * %[1]g", 1, true)
		})
	}
}

// BenchmarkEvaluateBothHalves judges the event against rules whose first
// half holds, so that each reads both: thresholds from 61% to 80% of the
// total, which the event (60% → 50%) is below already.
func BenchmarkEvaluateBothHalves(b *testing.B) {
	benchThresholds(b, 100, "new.remaining < new.total * %[1]g && old.remaining >= old.total * %[1]g", 61, true)
}

// BenchmarkEvaluateCrossings judges the event against 100 rules written
// as the catalog writes a threshold, thresholds from 1% to 20% of the
// total, none of which the event (60% → 50%) crosses.
func BenchmarkEvaluateCrossings(b *testing.B) {
	benchThresholds(b, 100, "crossedBelow(pct(old.remaining, old.total), pct(new.remaining, new.total), %g)", 1, false)
}

// benchThresholds judges the event against n rules of the condition
// format, none of which fires: the i-th's threshold is percent from plus
// i%20, written as a share of the total when share is set.
func benchThresholds(b *testing.B, n int, format string, from int, share bool) {
	conditions := make([]string, n)
	for i := range conditions {
		threshold := float64(from + i%20)
		if share {
			threshold /= 100
		}
		conditions[i] = fmt.Sprintf(format, threshold)
	}
	benchJudging(b, conditions, 0)
}

func BenchmarkEvaluateFires(b *testing.B) {
	conditions := make([]string, 10)
	for i := range conditions {
		conditions[i] = fmt.Sprintf("new.remaining < new.total * %g", float64(i+1)/100)
	}
	// The event leaves half of the total: of thresholds at 1% to 9%, and
	// one at 60%, only the last fires.
	conditions[9] = "new.remaining < new.total * 0.6"
	benchJudging(b, conditions, 1)
}

// benchJudging judges the test event with rules of the conditions, which
// must yield notes records.
func benchJudging(b *testing.B, conditions []string, notes int) {
	e, rec := testEvaluator(b, conditions...)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := e.evaluate(ctx, rec)
		if err != nil || len(out) != notes {
			b.Fatalf("evaluate = %d records, %v", len(out), err)
		}
	}
}
