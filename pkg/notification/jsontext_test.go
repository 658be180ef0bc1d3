package notification_test

import (
	"encoding/json"
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/twmb/avro"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// TestImagesAreWrittenAsEncodingJSONWritesThem pins the text of an entity
// image in a notification: byte for byte what encoding/json writes for every
// Go type a generic Avro decode yields, so that receivers comparing or
// signing payloads see the same text from release to release.
func TestImagesAreWrittenAsEncodingJSONWritesThem(t *testing.T) {
	img := map[string]any{
		"zeta": "last key", "alpha": "first key", "html": "<b>a & b</b>", "separators": "a\u2028b\u2029c",
		"invalidUTF8": "bad \xff\xfe byte", "control": "tab\tnew\nline\x01", "quote": `say "hi" \ there`,
		"unicode": "Ana Núñez 日本 🎉",
		"float":   0.1, "big": 1e21, "small": 1e-7, "negZero": math.Copysign(0, -1), "whole": 1000.0, "huge": math.MaxFloat64,
		"f32": float32(0.1), "f32big": float32(3.4e38), "int": int32(-7), "long": int64(math.MaxInt64),
		"bool": true, "null": nil, "bytes": []byte{0, 1, 2, 250}, "uuid": [16]byte{1, 2, 3},
		"at":        time.Date(2026, 3, 29, 1, 30, 0, 123456789, time.UTC),
		"date":      time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC),
		"timeOfDay": 9*time.Hour + 30*time.Minute,
		"decimal":   big.NewRat(12345, 100), "duration": avro.Duration{Months: 1, Days: 2, Milliseconds: 3},
		"tiers":  []any{map[string]any{"name": "t2", "limit": 500.0}, map[string]any{"name": "t1"}, []any{}, "x"},
		"nested": map[string]any{"b": map[string]any{}, "a": []any{nil, int64(1)}},
		"empty":  map[string]any{},
	}
	n, err := notification.FromMatch(notification.Match{
		Tenant: "acme", Event: notification.EventRef{ID: "ev", EntityType: "Balance", EntityID: "b", Operation: "UPDATE"},
		Old: map[string]any{}, New: img, RuleID: "r",
		Rule: configstore.Rule{Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"}},
	}, notification.Sample().CreatedAt)
	if err != nil {
		t.Fatalf("FromMatch: %v", err)
	}
	want, err := json.Marshal(img)
	if err != nil {
		t.Fatal(err)
	}
	if *n.New != string(want) {
		t.Errorf("new image\n got %s\nwant %s", *n.New, want)
	}
	if *n.Old != "{}" {
		t.Errorf("old image %s, want {}", *n.Old)
	}
}
