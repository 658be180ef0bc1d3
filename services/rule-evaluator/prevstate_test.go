package ruleevaluator

import (
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// TestComputedPrevStateAndThresholdReachTheNotification pins that a rule's
// previous state and threshold computed from the event are what the
// committed notification carries, not the rule's fixed ones.
func TestComputedPrevStateAndThresholdReachTheNotification(t *testing.T) {
	e, rec := testEvaluator(t)
	ctx := t.Context()
	entities, err := e.base.Entities(ctx, []string{"Balance"}, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.compiler.Compile("acme", "computed", configstore.Rule{
		Name: "computed", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When: "true",
		Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low",
			PrevStateExpr: "old.remaining > 550.0 ? 'ok' : 'low'", ThresholdExpr: "old.total * 0.5"},
	}, entities)
	if err != nil {
		t.Fatal(err)
	}
	e.index.Put(r)
	out, _, err := e.evaluate(ctx, rec)
	if err != nil || len(out) != 1 || out[0].Topic != e.base.Topics.Notifications {
		t.Fatalf("evaluate = %d records, %v; want one notification", len(out), err)
	}
	var n notification.Notification
	if _, err := e.base.Registry.Decode(ctx, out[0].Value, &n); err != nil {
		t.Fatal(err)
	}
	if n.PrevState == nil || *n.PrevState != "ok" || n.Threshold == nil || *n.Threshold != 500 {
		t.Errorf("prevState %v, threshold %v; want ok (remaining 600 before) and 500", deref(n.PrevState), deref(n.Threshold))
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
