package notification_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// TestNonFiniteNumbersAreWrittenAsNull pins that an entity holding NaN or
// ±Infinity (legal Avro doubles) still makes a notification, with those
// values null in every JSON the receiver can get, and nothing else changed.
func TestNonFiniteNumbersAreWrittenAsNull(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	img := map[string]any{
		"remaining": nan, "total": 1000.0, "used": math.Inf(-1),
		"tiers": []any{map[string]any{"limit": inf, "name": "t1"}, 5.5},
		"f32":   float32(math.Inf(1)),
	}
	n, err := notification.FromMatch(notification.Match{
		Tenant: "acme", Event: notification.EventRef{ID: "ev", EntityType: "Balance", EntityID: "b", Operation: "UPDATE"},
		Old: map[string]any{"remaining": 5.0}, New: img, RuleID: "r",
		Rule:   configstore.Rule{Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"}},
		Fields: map[string]any{"pct": nan, "list": []any{inf, 1.0}, "ok": 2.5, "iccid": "8930001", "subscription_id": "sub-1"},
	}, notification.Sample().CreatedAt)
	if err != nil {
		t.Fatalf("FromMatch: %v", err)
	}
	if img["remaining"] == nil || !math.IsNaN(img["remaining"].(float64)) {
		t.Fatalf("the caller's image was changed: %v", img)
	}
	var newImg map[string]any
	if err := json.Unmarshal([]byte(*n.New), &newImg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"remaining": nil, "total": 1000.0, "used": nil, "f32": nil,
		"tiers": []any{map[string]any{"limit": nil, "name": "t1"}, 5.5},
	}
	if got, _ := json.Marshal(newImg); string(got) != mustJSON(t, want) {
		t.Errorf("new = %s, want %s", got, mustJSON(t, want))
	}
	for k, want := range map[string]string{"pct": "null", "list": "[null,1]", "ok": "2.5"} {
		if n.Fields[k] != want {
			t.Errorf("field %s = %s, want %s", k, n.Fields[k], want)
		}
	}
	for _, format := range []string{notification.FormatNative, notification.FormatTotogi, notification.FormatTruphone} {
		f, err := notification.NewFormat(format, "", "")
		if err != nil {
			t.Fatal(err)
		}
		body, _, err := f.Render(n)
		if err != nil || !json.Valid(body) {
			t.Errorf("%s payload: %v, %s", format, err, body)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestIDIsTheVersion5UUIDOfItsInputs holds ID to uuid.NewSHA1 of the
// tenant, event and rule joined by NULs, for names that fit the stack
// buffer and names that do not.
func TestIDIsTheVersion5UUIDOfItsInputs(t *testing.T) {
	space := uuid.MustParse("6f1c1f0e-3c1a-4a53-9a57-1f4c0d6c2b10")
	for _, in := range [][3]string{
		{"acme", "evt-1", "rul_1"},
		{"", "", ""},
		{"acme", strings.Repeat("e", 300), "rul_1"},
		{"tenant-ü", "01J9Z6\x00", strings.Repeat("r", 237)},
	} {
		want := uuid.NewSHA1(space, []byte(in[0]+"\x00"+in[1]+"\x00"+in[2])).String()
		if got := notification.ID(in[0], in[1], in[2]); got != want {
			t.Errorf("ID%q = %s, want %s", in, got, want)
		}
	}
}
