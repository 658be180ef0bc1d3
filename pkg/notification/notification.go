// Package notification defines the Notification record that the rule
// evaluator writes to the notifications topic and the senders deliver, and
// the payloads a receiver gets: Herald's native JSON (JSON), and the
// formats a destination can choose instead (Format): Totogi's and
// Truphone's notification structures, or a tenant's own template.
package notification

import (
	"bytes"
	"crypto/sha1"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/google/uuid"
	// The same text as encoding/json writes, faster (BenchmarkRenderNative).
	"github.com/segmentio/encoding/json"
)

// idSpace is the UUID namespace notification ids are derived in.
var idSpace = uuid.MustParse("6f1c1f0e-3c1a-4a53-9a57-1f4c0d6c2b10")

// ID returns the notification id for a rule matching an event. It depends
// only on its inputs, so a re-evaluated event yields the same id and every
// delivery attempt carries it.
//
// It is the version 5 UUID of tenant, eventID and ruleID joined by NULs in
// idSpace, as uuid.NewSHA1 makes it, hashed from a buffer on the stack
// instead of the copies and hash NewSHA1 allocates.
func ID(tenant, eventID, ruleID string) string {
	var buf [256]byte
	name := append(append(buf[:0], idSpace[:]...), tenant...)
	name = append(append(append(name, 0), eventID...), 0)
	sum := sha1.Sum(append(name, ruleID...))
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = id[6]&0x0f | 5<<4 // version 5
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	return id.String()
}

// Notification is one rule's match on one event.
type Notification struct {
	ID           string            `avro:"id"`
	TenantID     string            `avro:"tenantId"`
	RuleID       string            `avro:"ruleId"`
	Name         string            `avro:"name"`
	State        string            `avro:"state"`
	PrevState    *string           `avro:"prevState"`
	Threshold    *float64          `avro:"threshold"`
	OrderingKey  string            `avro:"orderingKey"`
	Ordered      bool              `avro:"ordered"`
	Destinations []string          `avro:"destinations"`
	CreatedAt    time.Time         `avro:"createdAt"`
	Event        EventRef          `avro:"event"`
	Old          *string           `avro:"old"`    // JSON
	New          *string           `avro:"new"`    // JSON
	Fields       map[string]string `avro:"fields"` // name → JSON value
}

// DecodeTarget returns an empty notification to decode a notification
// record into. Its optional fields point at storage allocated with it, and
// its destinations have room for a few: twmb/avro decodes a non-nil
// pointer's value in place (and sets the pointer to nil for a null), and
// an array into the slice it finds, emptied, while it has room. So a
// decode allocates once for the notification, its optional values and
// its first destinations, instead of once for each.
func DecodeTarget() *Notification {
	t := new(struct {
		n                                                     Notification
		prevState, old, new, accountID, deviceID, correlation string
		threshold                                             float64
		destinations                                          [4]string
	})
	n := &t.n
	n.PrevState, n.Threshold, n.Old, n.New = &t.prevState, &t.threshold, &t.old, &t.new
	n.Event.AccountID, n.Event.DeviceID, n.Event.CorrelationID = &t.accountID, &t.deviceID, &t.correlation
	n.Destinations = t.destinations[:0]
	return n
}

// EventRef identifies the event a notification came from.
type EventRef struct {
	ID            string    `avro:"id" json:"id"`
	EntityType    string    `avro:"entityType" json:"entityType"`
	EntityID      string    `avro:"entityId" json:"entityId"`
	Operation     string    `avro:"operation" json:"operation"`
	OccurredAt    time.Time `avro:"occurredAt" json:"occurredAt"`
	AccountID     *string   `avro:"accountId" json:"accountId,omitempty"`
	DeviceID      *string   `avro:"deviceId" json:"deviceId,omitempty"`
	CorrelationID *string   `avro:"correlationId" json:"correlationId,omitempty"`
}

// JSON returns the notification in Herald's native JSON payload format.
func (n *Notification) JSON() ([]byte, error) {
	return n.AppendJSON(make([]byte, 0, n.jsonSize()))
}

// jsonSize is about the length of n's native JSON payload, so that JSON
// writes it into one allocation: the keys and punctuation, the longest
// times, the strings unescaped, the images and fields as they are.
func (n *Notification) jsonSize() int {
	size := 240 + len(n.ID) + len(n.Name) + len(n.State) + len(n.TenantID) + len(n.RuleID) +
		len(n.Event.ID) + len(n.Event.EntityType) + len(n.Event.EntityID) + len(n.Event.Operation)
	for _, s := range [...]*string{n.PrevState, n.Event.AccountID, n.Event.DeviceID, n.Event.CorrelationID, n.Old, n.New} {
		if s != nil {
			size += 20 + len(*s)
		}
	}
	if n.Threshold != nil {
		size += 40
	}
	if len(n.Fields) > 0 {
		size += 12
		for k, v := range n.Fields {
			size += len(k) + len(v) + 4
		}
	}
	return size
}

// AppendJSON appends the native JSON payload to b. The text is what
// encoding/json writes for these fields in this order: strings escaped
// for HTML, optional fields left out when unset, the images and fields
// compacted (each must be valid JSON), fields in key order. It is written
// field by field, without reflection, as a sender renders every
// notification it delivers.
func (n *Notification) AppendJSON(b []byte) ([]byte, error) {
	b = appendString(append(b, `{"id":`...), n.ID)
	b = appendString(append(b, `,"name":`...), n.Name)
	b = appendString(append(b, `,"state":`...), n.State)
	if n.PrevState != nil {
		b = appendString(append(b, `,"prevState":`...), *n.PrevState)
	}
	if n.Threshold != nil {
		t := *n.Threshold
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, fmt.Errorf("threshold %v: JSON has no such number", t)
		}
		b = AppendNumber(append(b, `,"threshold":`...), t, 64)
	}
	b = appendString(append(b, `,"tenantId":`...), n.TenantID)
	b = appendString(append(b, `,"ruleId":`...), n.RuleID)
	b = AppendTime(append(b, `,"createdAt":`...), n.CreatedAt)
	b = n.Event.appendJSON(append(b, `,"event":`...))
	var err error
	if b, err = appendRawOrNull(append(b, `,"old":`...), n.Old); err != nil {
		return nil, fmt.Errorf("old: %w", err)
	}
	if b, err = appendRawOrNull(append(b, `,"new":`...), n.New); err != nil {
		return nil, fmt.Errorf("new: %w", err)
	}
	if len(n.Fields) > 0 {
		// A notification has a few fields: their names are sorted on
		// the stack.
		var names [8]string
		keys := names[:0]
		for k := range n.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, `,"fields":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendString(b, k), ':')
			if b, err = appendRaw(b, n.Fields[k]); err != nil {
				return nil, fmt.Errorf("field %s: %w", k, err)
			}
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func (e *EventRef) appendJSON(b []byte) []byte {
	b = appendString(append(b, `{"id":`...), e.ID)
	b = appendString(append(b, `,"entityType":`...), e.EntityType)
	b = appendString(append(b, `,"entityId":`...), e.EntityID)
	b = appendString(append(b, `,"operation":`...), e.Operation)
	b = AppendTime(append(b, `,"occurredAt":`...), e.OccurredAt)
	for _, f := range [...]struct {
		key string
		v   *string
	}{{`,"accountId":`, e.AccountID}, {`,"deviceId":`, e.DeviceID}, {`,"correlationId":`, e.CorrelationID}} {
		if f.v != nil {
			b = appendString(append(b, f.key...), *f.v)
		}
	}
	return append(b, '}')
}

// jsonFlags are encoding/json's own: HTML characters escaped.
const jsonFlags = json.EscapeHTML

func appendString(b []byte, s string) []byte { return json.AppendEscape(b, s, jsonFlags) }

// AppendTime writes t as time.Time's MarshalJSON does for the years it
// takes.
func AppendTime(b []byte, t time.Time) []byte {
	return append(t.AppendFormat(append(b, '"'), time.RFC3339Nano), '"')
}

func appendRawOrNull(b []byte, s *string) ([]byte, error) {
	if s == nil {
		return append(b, "null"...), nil
	}
	return appendRaw(b, *s)
}

// appendRaw writes the JSON text s as encoding/json writes a RawMessage:
// checked, compacted, HTML characters escaped. The text Herald writes is
// already in that form, and is copied as it is.
func appendRaw(b []byte, s string) ([]byte, error) {
	// A view of s's bytes for the checks, which neither keep nor change
	// them: a copy would cost more than the check.
	raw := unsafe.Slice(unsafe.StringData(s), len(s))
	// encoding/json's check, not segmentio's: segmentio's begins with an
	// AVX2 routine of segmentio/asm that returns without VZEROUPPER, and
	// on CPUs that penalise the SSE code that follows dirty AVX state,
	// the webhook signature's SHA-256 after it took 100 times as long.
	if !stdjson.Valid(raw) {
		return nil, errors.New("not valid JSON")
	}
	if compactAndEscaped(s) {
		return append(b, s...), nil
	}
	var buf bytes.Buffer
	if err := stdjson.Compact(&buf, raw); err != nil {
		return nil, err
	}
	out := bytes.NewBuffer(b)
	stdjson.HTMLEscape(out, buf.Bytes())
	return out.Bytes(), nil
}

// compactAndEscaped reports whether s, valid JSON, has nothing that
// compacting or escaping changes: no space, no <, > or &, and no byte that
// may begin U+2028 or U+2029.
func compactAndEscaped(s string) bool {
	for i := range len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xE2:
			return false
		}
	}
	return true
}

// AppendNumber writes a float of bits bits as encoding/json does (ES6's
// form, an exponent without leading zeros), and a number that is not
// finite as null.
func AppendNumber(out []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(out, "null"...)
	}
	abs, format := math.Abs(f), byte('f')
	if abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	out = strconv.AppendFloat(out, f, format, -1, bits)
	if n := len(out); format == 'e' && n >= 4 && out[n-4] == 'e' && out[n-3] == '-' && out[n-2] == '0' {
		out[n-2] = out[n-1]
		out = out[:n-1]
	}
	return out
}
