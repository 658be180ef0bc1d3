package delivery

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/schemas"
)

// TestDecodingANotificationAllocatesWithinItsBudget pins what reading a
// notification record costs the engine, which reads one per delivery: the
// notification with its optional values and first destinations, its
// fields, and its strings, and nothing else. A notification whose optional
// values are all null decodes to nil pointers, not to the storage made for
// them, and one with more destinations than that storage has room for
// decodes whole.
func TestDecodingANotificationAllocatesWithinItsBudget(t *testing.T) {
	fake := srfake.New()
	t.Cleanup(fake.Close)
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	reg := avro.NewRegistry(cl, time.Hour)
	rec := schemas.Notification()
	if err := reg.Register(t.Context(), "notifications-value", rec.Versions, sr.CompatFullTransitive); err != nil {
		t.Fatal(err)
	}
	schema, err := reg.Latest(t.Context(), "notifications-value")
	if err != nil {
		t.Fatal(err)
	}
	want := notification.Sample()
	want.Destinations = []string{"dst_1", "dst_2"}
	// Images of the size an entity's are.
	old, new := `{"accountId":"acct-1","id":"bal-1","kind":"data","planId":"plan-basic","remaining":300,"tiers":{},"total":1000,"unit":"MB","used":700}`,
		`{"accountId":"acct-1","id":"bal-1","kind":"data","planId":"plan-basic","remaining":150,"tiers":{},"total":1000,"unit":"MB","used":850}`
	want.Old, want.New = &old, &new
	e := &Engine{reg: reg}
	// roundTrip encodes n, decodes it as the engine does, and returns the
	// record.
	roundTrip := func(n *notification.Notification) []byte {
		t.Helper()
		value, err := schema.Encode(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.decode(t.Context(), value)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, n) {
			t.Fatalf("decoded %+v, want %+v", got, n)
		}
		return value
	}
	value := roundTrip(want)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := e.decode(t.Context(), value); err != nil {
			t.Fatal(err)
		}
	})
	if budget := 5.0 + raceAllocs; allocs > budget {
		t.Errorf("decoding a notification allocates %.0f times, over the budget of %.0f", allocs, budget)
	}

	bare := *want
	// (An empty map of fields decodes as an empty map.)
	bare.PrevState, bare.Threshold, bare.Old, bare.New, bare.Fields = nil, nil, nil, nil, map[string]string{}
	bare.Event.AccountID, bare.Event.DeviceID, bare.Event.CorrelationID = nil, nil, nil
	roundTrip(&bare)

	many := *want
	many.Destinations = []string{"dst_1", "dst_2", "dst_3", "dst_4", "dst_5", "dst_6"}
	roundTrip(&many)
}
