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
			conditions := make([]string, n)
			for i := range n {
				pct := float64(i%20+1) / 100
				conditions[i] = fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", pct, pct)
			}
			benchJudging(b, conditions, 0)
		})
	}
}

// BenchmarkEvaluateBothHalves judges the event against rules whose first
// half holds, so that each reads both: thresholds from 61% to 80% of the
// total, which the event (60% → 50%) is below already.
func BenchmarkEvaluateBothHalves(b *testing.B) {
	conditions := make([]string, 100)
	for i := range conditions {
		pct := float64(i%20+61) / 100
		conditions[i] = fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", pct, pct)
	}
	benchJudging(b, conditions, 0)
}

// BenchmarkEvaluateCrossings judges the event against 100 rules written
// as the catalog writes a threshold, thresholds from 1% to 20% of the
// total, none of which the event (60% → 50%) crosses.
func BenchmarkEvaluateCrossings(b *testing.B) {
	conditions := make([]string, 100)
	for i := range conditions {
		conditions[i] = fmt.Sprintf("crossedBelow(pct(old.remaining, old.total), pct(new.remaining, new.total), %d)", i%20+1)
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
