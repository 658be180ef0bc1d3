// Package notification defines the Notification record that the rule
// evaluator writes to the notifications topic and the senders deliver, and
// the payloads a receiver gets: Herald's native JSON (JSON), and the
// formats a destination can choose instead (Format): Totogi's and
// Truphone's notification structures, or a tenant's own template.
package notification

import (
	"crypto/sha1"
	"time"

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

// payload is Herald's native JSON form of a notification.
type payload struct {
	ID        string                     `json:"id"`
	Name      string                     `json:"name"`
	State     string                     `json:"state"`
	PrevState *string                    `json:"prevState,omitempty"`
	Threshold *float64                   `json:"threshold,omitempty"`
	TenantID  string                     `json:"tenantId"`
	RuleID    string                     `json:"ruleId"`
	CreatedAt time.Time                  `json:"createdAt"`
	Event     EventRef                   `json:"event"`
	Old       json.RawMessage            `json:"old"`
	New       json.RawMessage            `json:"new"`
	Fields    map[string]json.RawMessage `json:"fields,omitempty"`
}

// JSON returns the notification in Herald's native JSON payload format.
func (n *Notification) JSON() ([]byte, error) {
	return json.Marshal(n.payload())
}

func (n *Notification) payload() payload {
	return payload{
		ID: n.ID, Name: n.Name, State: n.State, PrevState: n.PrevState, Threshold: n.Threshold,
		TenantID: n.TenantID, RuleID: n.RuleID, CreatedAt: n.CreatedAt, Event: n.Event,
		Old: rawOrNull(n.Old), New: rawOrNull(n.New), Fields: rawFields(n.Fields),
	}
}

func rawOrNull(s *string) json.RawMessage {
	if s == nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(*s)
}
