package rules_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/rules"
)

// commitment is an entity shaped like m3ter's Commitment, for the m3ter
// calculations below.
func commitment() rules.Entity {
	e, err := rules.EntityFromSchemas("Commitment", []*avroSchema{mustParse(`{
		"type":"record","name":"Commitment","namespace":"herald.events","fields":[
		{"name":"eventId","type":"string"},
		{"name":"old","type":["null",{"type":"record","name":"Commitment","namespace":"herald.entities","fields":[
			{"name":"id","type":"string"},
			{"name":"accountId","type":"string"},
			{"name":"amount","type":"double"},
			{"name":"amountSpent","type":["null","double"],"default":null},
			{"name":"count","type":"long","default":0},
			{"name":"endDate","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null}]}],"default":null},
		{"name":"new","type":["null","herald.entities.Commitment"],"default":null}]}`)})
	if err != nil {
		panic(err)
	}
	return e
}

func evaluate(t *testing.T, entity rules.Entity, when string, old, nw map[string]any) (bool, error) {
	t.Helper()
	r, err := rules.NewCompiler(rules.DefaultLimits).Compile("acme", "r", configstore.Rule{
		On: configstore.RuleOn{EntityTypes: []string{entity.Name}}, When: when,
	}, map[string]rules.Entity{entity.Name: entity})
	if err != nil {
		t.Fatalf("Compile(%q): %v", when, err)
	}
	res, err := r.Evaluate(entity.Name, &rules.Input{Old: old, New: nw, Event: map[string]any{"operation": "UPDATE"}})
	return res.Fired, err
}

func TestM3terCalculationsWorkUnchanged(t *testing.T) {
	const spent90 = `(new.amountSpent >= ((new.amount*100)/90)) AND ((old.amountSpent <= ((old.amount*100)/90)) OR (old.amountSpent == null))`
	c := func(amount, spent any) map[string]any {
		return map[string]any{"id": "c-1", "accountId": "df41d216-XXXX-470f-YYYY-79b16059a96f", "amount": amount, "amountSpent": spent, "count": int64(2)}
	}
	tests := []struct {
		name     string
		when     string
		old, new map[string]any
		want     bool
	}{
		{"account id matches", `new.accountId == "df41d216-XXXX-470f-YYYY-79b16059a96f"`, nil, c(100.0, 10.0), true},
		{"account id differs", `new.accountId == "other"`, nil, c(100.0, 10.0), false},
		{"spend crosses on an update", spent90, c(90.0, 95.0), c(90.0, 101.0), true},
		{"spend already past", spent90, c(90.0, 101.0), c(90.0, 105.0), false},
		{"spend below", spent90, c(90.0, 10.0), c(90.0, 20.0), false},
		{"create past the mark: old is null", spent90, nil, c(90.0, 101.0), true},
		{"old amountSpent absent", spent90, c(90.0, nil), c(90.0, 101.0), true},
		{"isnull on a null image's field", `isnull(old.amountSpent)`, nil, c(90.0, 1.0), true},
		{"isnull on a set field", `isnull(new.amountSpent)`, nil, c(90.0, 1.0), false},
		{"null image equals null", `old == null`, nil, c(90.0, 1.0), true},
		{"AND inside a string is a literal", `new.accountId != "AND" AND new.amount > 1`, nil, c(90.0, 1.0), true},
		{"int field times a double", `new.count * 1.5 == 3.0`, nil, c(90.0, 1.0), true},
		{"double field equals an int literal", `new.amount == 90`, nil, c(90.0, 1.0), true},
		{"double compared with an int literal", `new.amount >= 90 AND new.amount <= 90`, nil, c(90.0, 1.0), true},
		{"int minus double", `100 - new.amount == 10.0`, nil, c(90.0, 1.0), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := evaluate(t, commitment(), tt.when, tt.old, tt.new)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s = %v, want %v", tt.when, got, tt.want)
			}
		})
	}
}

func TestThresholdHelpersFireOncePerCrossing(t *testing.T) {
	// A sequence of spends against a limit of 80: each step's old is the
	// previous step's new. The first step creates the entity: with no old
	// value, being on a side of the threshold counts as having crossed to it.
	spent := []any{nil, 50.0, 79.0, 85.0, 90.0, 70.0, 81.0, 81.0}
	wantAbove := []bool{false, false, true, false, false, true, false}
	wantBelow := []bool{true, false, false, false, true, false, false}
	for i := 1; i < len(spent); i++ {
		old := map[string]any{"id": "c", "accountId": "a", "amount": 100.0, "amountSpent": spent[i-1]}
		if spent[i-1] == nil {
			old = nil
		}
		nw := map[string]any{"id": "c", "accountId": "a", "amount": 100.0, "amountSpent": spent[i]}
		above, err := evaluate(t, commitment(), `crossedAbove(old.amountSpent, new.amountSpent, 80)`, old, nw)
		if err != nil {
			t.Fatal(err)
		}
		below, err := evaluate(t, commitment(), `crossedBelow(old.amountSpent, new.amountSpent, 80)`, old, nw)
		if err != nil {
			t.Fatal(err)
		}
		if above != wantAbove[i-1] || below != wantBelow[i-1] {
			t.Errorf("%v → %v: crossedAbove %v crossedBelow %v, want %v %v", spent[i-1], spent[i], above, below, wantAbove[i-1], wantBelow[i-1])
		}
	}
}

func TestPct(t *testing.T) {
	tests := []struct {
		when string
		want bool
	}{
		{`pct(new.amountSpent, new.amount) == 25.0`, true},
		{`pct(new.amountSpent, 0) == null`, true},
		{`pct(old.amountSpent, old.amount) == null`, true},
		{`crossedAbove(pct(old.amountSpent, old.amount), pct(new.amountSpent, new.amount), 20)`, true},
	}
	for _, tt := range tests {
		got, err := evaluate(t, commitment(), tt.when, nil, map[string]any{"id": "c", "accountId": "a", "amount": 200.0, "amountSpent": 50.0})
		if err != nil || got != tt.want {
			t.Errorf("%s = %v, %v; want %v", tt.when, got, err, tt.want)
		}
	}
}

func TestTimestampsAndDurations(t *testing.T) {
	end := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	nw := map[string]any{"id": "c", "accountId": "a", "amount": 1.0, "endDate": end}
	for _, when := range []string{
		`new.endDate - duration("72h") < timestamp("2026-04-29T00:00:00Z")`,
		`new.endDate == timestamp("2026-05-01T00:00:00Z")`,
		`old.endDate == null`,
		`new.endDate.getMonth() == 4`,
	} {
		got, err := evaluate(t, commitment(), when, nil, nw)
		if err != nil || !got {
			t.Errorf("%s = %v, %v; want true", when, got, err)
		}
	}
}

func TestCompileRefusesAFieldNoVersionHas(t *testing.T) {
	c := rules.NewCompiler(rules.DefaultLimits)
	_, err := c.Compile("acme", "r", configstore.Rule{
		On: configstore.RuleOn{EntityTypes: []string{"Commitment"}}, When: "new.amountSpnet > 1",
	}, map[string]rules.Entity{"Commitment": commitment()})
	var ce *rules.CompileError
	if !errors.As(err, &ce) || ce.Field != "when" || !strings.Contains(ce.Message, "undefined field 'amountSpnet'") || !strings.Contains(ce.Message, "1:4") {
		t.Fatalf("Compile = %v, want an undefined field error at 1:4", err)
	}
}

func TestOrderingKeyExpression(t *testing.T) {
	c := rules.NewCompiler(rules.DefaultLimits)
	r, err := c.Compile("acme", "r", configstore.Rule{
		On: configstore.RuleOn{EntityTypes: []string{"Commitment"}}, When: "true", OrderingKey: `"commitment/" + new.id`,
	}, map[string]rules.Entity{"Commitment": commitment()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Evaluate("Commitment", &rules.Input{New: map[string]any{"id": "c-9"}})
	if err != nil || res.OrderingKey != "commitment/c-9" {
		t.Fatalf("Evaluate = %+v, %v; want ordering key commitment/c-9", res, err)
	}
	_, err = c.Compile("acme", "r", configstore.Rule{
		On: configstore.RuleOn{EntityTypes: []string{"Commitment"}}, When: "true", OrderingKey: `new.amount`,
	}, map[string]rules.Entity{"Commitment": commitment()})
	if err == nil {
		t.Fatal("an ordering key that is not a string compiled")
	}
}

func TestCompileRefusesAnExpressionOverTheLimits(t *testing.T) {
	limits := rules.DefaultLimits
	c := rules.NewCompiler(limits)
	compile := func(when string) error {
		_, err := c.Compile("acme", "r", configstore.Rule{On: configstore.RuleOn{EntityTypes: []string{"Commitment"}}, When: when},
			map[string]rules.Entity{"Commitment": commitment()})
		return err
	}
	if err := compile("true" + strings.Repeat(" ", limits.MaxExpressionLength)); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("an over-long expression: %v", err)
	}
	if err := compile(strings.Repeat("(", 100) + "true" + strings.Repeat(")", 100)); err == nil {
		t.Error("an expression nested 100 deep compiled")
	}
	if err := compile(nestedAll(7)); err == nil || !strings.Contains(err.Error(), "estimated cost") {
		t.Errorf("an expression of 10^7 iterations: %v, want it refused by its estimated cost", err)
	}
	var r *rules.Rule
	r, err := c.Compile("acme", "r", configstore.Rule{On: configstore.RuleOn{EntityTypes: []string{"Commitment"}}, When: nestedAll(5)},
		map[string]rules.Entity{"Commitment": commitment()})
	if err != nil {
		t.Fatalf("10^5 iterations are within the estimate limit: %v", err)
	}
	if _, err := r.Evaluate("Commitment", &rules.Input{}); !errors.Is(err, rules.ErrCostLimit) {
		t.Errorf("Evaluate = %v, want ErrCostLimit", err)
	}
}
