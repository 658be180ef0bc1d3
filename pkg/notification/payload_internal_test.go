package notification

import (
	stdjson "encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// payload is the native payload as a struct, for encoding/json: the
// reference AppendJSON is held to.
type payload struct {
	ID        string                        `json:"id"`
	Name      string                        `json:"name"`
	State     string                        `json:"state"`
	PrevState *string                       `json:"prevState,omitempty"`
	Threshold *float64                      `json:"threshold,omitempty"`
	TenantID  string                        `json:"tenantId"`
	RuleID    string                        `json:"ruleId"`
	CreatedAt time.Time                     `json:"createdAt"`
	Event     EventRef                      `json:"event"`
	Old       stdjson.RawMessage            `json:"old"`
	New       stdjson.RawMessage            `json:"new"`
	Fields    map[string]stdjson.RawMessage `json:"fields,omitempty"`
}

func (n *Notification) payload() payload {
	raw := func(s *string) stdjson.RawMessage {
		if s == nil {
			return stdjson.RawMessage("null")
		}
		return stdjson.RawMessage(*s)
	}
	var fields map[string]stdjson.RawMessage
	if len(n.Fields) > 0 {
		fields = map[string]stdjson.RawMessage{}
		for k, v := range n.Fields {
			fields[k] = stdjson.RawMessage(v)
		}
	}
	return payload{
		ID: n.ID, Name: n.Name, State: n.State, PrevState: n.PrevState, Threshold: n.Threshold,
		TenantID: n.TenantID, RuleID: n.RuleID, CreatedAt: n.CreatedAt, Event: n.Event,
		Old: raw(n.Old), New: raw(n.New), Fields: fields,
	}
}

// TestNativePayloadIsWhatEncodingJSONWrites pins the native payload's text:
// byte for byte what encoding/json writes for the same notification, images
// compacted and HTML-escaped, so that receivers see the same body from
// release to release.
func TestNativePayloadIsWhatEncodingJSONWrites(t *testing.T) {
	full := Sample()
	spaced, html := `{ "remaining" : 150,  "note": "<a & b>" }`, `{"unit":"MB\u2028","x":[1e21, 0.1]}`
	full.Old, full.New = &spaced, &html
	full.Fields = map[string]string{"b": `"<b>"`, "a": "1.5", "list": `[1, 2]`}
	bare := Sample()
	bare.Old, bare.PrevState, bare.Threshold, bare.Fields = nil, nil, nil, nil
	bare.Event.AccountID, bare.Event.DeviceID, bare.Event.CorrelationID = nil, nil, nil
	for name, n := range map[string]*Notification{"every field": full, "optional fields absent": bare} {
		t.Run(name, func(t *testing.T) {
			assertWrittenAsEncodingJSON(t, n)
		})
	}
}

// TestRandomPayloadsAreWhatEncodingJSONWrites holds AppendJSON to
// encoding/json over random notifications: strings that need escaping or
// are not UTF-8, images and fields spaced or not, with HTML characters or
// U+2028, thresholds either side of JSON's exponent cut-offs, optional
// fields set or not, and images that are not JSON, which both refuse.
func TestRandomPayloadsAreWhatEncodingJSONWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 13))
	refused := 0
	for i := range 3000 {
		n := randomNotification(r)
		if !assertWrittenAsEncodingJSON(t, n) {
			t.Fatalf("notification %d: %#v", i, n)
		}
		if _, err := n.JSON(); err != nil {
			refused++
		}
	}
	// Both outcomes must be exercised.
	if refused == 0 || refused > 1500 {
		t.Errorf("%d of 3000 refused; want some, and most written", refused)
	}
}

// assertWrittenAsEncodingJSON reports whether n.JSON() gives encoding/json's
// text for n, or fails as encoding/json does.
func assertWrittenAsEncodingJSON(t *testing.T, n *Notification) bool {
	t.Helper()
	got, err := n.JSON()
	want, werr := stdjson.Marshal(n.payload())
	switch {
	case (err == nil) != (werr == nil):
		t.Errorf("error %v; encoding/json's %v", err, werr)
		return false
	case string(got) != string(want):
		t.Errorf("payload\n got %s\nwant %s", got, want)
		return false
	}
	return true
}

func randomNotification(r *rand.Rand) *Notification {
	maybe := func(s string) *string {
		if r.IntN(3) == 0 {
			return nil
		}
		return &s
	}
	n := &Notification{
		ID: randomString(r), TenantID: randomString(r), RuleID: randomString(r), Name: randomString(r), State: randomString(r),
		PrevState: maybe(randomString(r)),
		CreatedAt: time.UnixMilli(r.Int64N(253402300799999)).UTC(),
		Event: EventRef{ID: randomString(r), EntityType: randomString(r), EntityID: randomString(r), Operation: randomString(r),
			OccurredAt: time.Unix(r.Int64N(253402300799), r.Int64N(1e9)).In(time.FixedZone("", (r.IntN(48)-24)*1800)),
			AccountID:  maybe(randomString(r)), DeviceID: maybe(randomString(r)), CorrelationID: maybe(randomString(r))},
		Old: maybe(randomImage(r)), New: maybe(randomImage(r)),
	}
	if r.IntN(2) == 0 {
		th := randomFloat(r)
		n.Threshold = &th
	}
	if k := r.IntN(4); k > 0 {
		n.Fields = map[string]string{}
		for range k {
			n.Fields[randomString(r)] = randomImage(r)
		}
	}
	return n
}

var pieces = []string{"a", "Z", "é", "€", "<", ">", "&", `"`, `\`, "\n", "\t", "\x00", "\x1f", "\u2028", "\u2029", "\xff", "\xe2\x80", "😀", " ", "/"}

func randomString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(6) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

func randomFloat(r *rand.Rand) float64 {
	edges := []float64{0, math.Copysign(0, -1), 1e-6, 9.999999e-7, 1e21, 9.99999e20, 0.1, -80, 1.5e300, 5e-324,
		math.NaN(), math.Inf(1), math.Inf(-1)}
	if r.IntN(2) == 0 {
		return edges[r.IntN(len(edges))]
	}
	return (r.Float64() - 0.5) * math.Pow(10, float64(r.IntN(50)-25))
}

// randomImage is a JSON value, spaced at random, or now and then not JSON.
func randomImage(r *rand.Rand) string {
	var b strings.Builder
	randomValue(r, &b, 3)
	s := b.String()
	switch r.IntN(25) {
	case 0:
		return s + " x"
	case 1:
		return s[:len(s)/2]
	case 2:
		return ""
	}
	return s
}

func randomValue(r *rand.Rand, b *strings.Builder, depth int) {
	space := func() {
		if r.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "\r\n"}[r.IntN(4)])
		}
	}
	space()
	switch k := r.IntN(7); {
	case k == 0 && depth > 0:
		b.WriteByte('{')
		for i := range r.IntN(3) {
			if i > 0 {
				b.WriteByte(',')
			}
			space()
			writeJSONString(b, randomString(r))
			space()
			b.WriteByte(':')
			randomValue(r, b, depth-1)
		}
		b.WriteByte('}')
	case k == 1 && depth > 0:
		b.WriteByte('[')
		for i := range r.IntN(3) {
			if i > 0 {
				b.WriteByte(',')
			}
			randomValue(r, b, depth-1)
		}
		b.WriteByte(']')
	case k == 2:
		writeJSONString(b, randomString(r))
	case k == 3:
		b.WriteString([]string{"true", "false", "null"}[r.IntN(3)])
	default:
		fmt.Fprint(b, []string{"0", "-1", "1.5", "1e21", "2E-7", "123456789012345678901234567890"}[r.IntN(6)])
	}
	space()
}

// writeJSONString writes s as a JSON string, leaving <, >, &, U+2028 and
// bytes that are not UTF-8 as they are, as another writer might.
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := range len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// TestNativePayloadAllocatesNothingIntoABuffer pins the cost of rendering
// the native payload, which a sender does for every notification it
// delivers: into a buffer with room, nothing is allocated.
func TestNativePayloadAllocatesNothingIntoABuffer(t *testing.T) {
	n := Sample()
	n.Fields = map[string]string{"percent": "15", "unit": `"MB"`, "limit": "1000"}
	buf := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := n.AppendJSON(buf[:0]); err != nil {
			t.Fatal(err)
		}
	}); allocs > raceAllowance(n) {
		t.Errorf("AppendJSON allocated %.0f times; want 0", allocs)
	}
}

// raceAllowance is what the race detector may add to rendering n.
func raceAllowance(n *Notification) float64 {
	checks := len(n.Fields)
	for _, image := range []*string{n.Old, n.New} {
		if image != nil {
			checks++
		}
	}
	return float64(checks * racePoolAllocs)
}

// TestNativePayloadIsRenderedInOneAllocation pins JSON's estimate of the
// payload's length: a notification whose strings need no escaping is
// written into the one buffer JSON allocates, never grown. The estimate is
// checked against the payload too, which the race detector's allowance
// cannot hide.
func TestNativePayloadIsRenderedInOneAllocation(t *testing.T) {
	long := strings.Repeat("x", 300)
	for name, n := range map[string]*Notification{
		"sample": Sample(),
		"fields": func() *Notification {
			n := Sample()
			n.Fields = map[string]string{"percent": "15", "unit": `"MB"`, "limit": "1000"}
			return n
		}(),
		"long strings, no images": func() *Notification {
			n := Sample()
			n.Old, n.New, n.Name, n.Event.EntityID, n.Event.CorrelationID = nil, nil, long, long, &long
			return n
		}(),
	} {
		b, err := n.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > n.jsonSize() {
			t.Errorf("%s: the payload is %d bytes, over the estimate of %d", name, len(b), n.jsonSize())
		}
		if allocs := testing.AllocsPerRun(100, func() {
			if _, err := n.JSON(); err != nil {
				t.Fatal(err)
			}
		}); allocs < 1 || allocs > 1+raceAllowance(n) {
			t.Errorf("%s: JSON allocated %.0f times; want 1", name, allocs)
		}
	}
}
