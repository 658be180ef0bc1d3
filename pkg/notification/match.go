package notification

import (
	"fmt"
	"time"

	// The same text as encoding/json writes, faster (see
	// BenchmarkEvaluateFires); jsonReady mends the one type it writes
	// differently.
	"github.com/segmentio/encoding/json"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
)

// Ref reads the event a decoded envelope describes, and its tenant.
func Ref(envelope map[string]any) (ref EventRef, tenant string) {
	str := func(k string) string { s, _ := envelope[k].(string); return s }
	opt := func(k string) *string {
		if s, ok := envelope[k].(string); ok {
			return &s
		}
		return nil
	}
	at, _ := envelope["occurredAt"].(time.Time)
	return EventRef{
		ID: str("eventId"), EntityType: str("entityType"), EntityID: str("entityId"), Operation: str("operation"),
		OccurredAt: at, AccountID: opt("accountId"), DeviceID: opt("deviceId"), CorrelationID: opt("correlationId"),
	}, str("tenantId")
}

// Match is a rule firing on an event: what a notification is made of.
type Match struct {
	Tenant string
	Event  EventRef
	// Old and New are the entity images as decoded.
	Old, New map[string]any
	RuleID   string
	Rule     configstore.Rule
	// Fields are the rule's computed fields, JSON-ready.
	Fields map[string]any
	// OrderingKey is the rule's own key; empty for the event's partition key.
	OrderingKey string
	// OldJSON and NewJSON, when set, are Old and New as the notification
	// writes them already: another rule's notification on the same event
	// made them, and every notification of an event carries the same.
	OldJSON, NewJSON *string
}

// FromMatch builds the notification m makes, created at now.
func FromMatch(m Match, now time.Time) (*Notification, error) {
	key := m.OrderingKey
	if key == "" {
		acct := ""
		if m.Event.AccountID != nil {
			acct = *m.Event.AccountID
		}
		key = event.PartitionKey(acct, m.Event.EntityType, m.Event.EntityID)
	}
	spec := m.Rule.Notification
	n := &Notification{
		ID:           ID(m.Tenant, m.Event.ID, m.RuleID),
		TenantID:     m.Tenant,
		RuleID:       m.RuleID,
		Name:         spec.Name,
		State:        spec.State,
		Threshold:    spec.Threshold,
		OrderingKey:  key,
		Ordered:      m.Rule.Ordering != configstore.Unordered,
		Destinations: m.Rule.Destinations,
		CreatedAt:    now.UTC(),
		Event:        m.Event,
	}
	if len(m.Fields) > 0 {
		n.Fields = make(map[string]string, len(m.Fields))
	}
	if n.Destinations == nil {
		n.Destinations = []string{}
	}
	if prev := spec.PrevState; prev != "" {
		n.PrevState = &prev
	}
	var err error
	if n.Old = m.OldJSON; n.Old == nil {
		if n.Old, err = jsonText(m.Old); err != nil {
			return nil, err
		}
	}
	if n.New = m.NewJSON; n.New == nil {
		if n.New, err = jsonText(m.New); err != nil {
			return nil, err
		}
	}
	for k, v := range m.Fields {
		b, err := json.Marshal(jsonReady(v))
		if err != nil {
			return nil, fmt.Errorf("rule %s: field %s: %w", m.RuleID, k, err)
		}
		n.Fields[k] = string(b)
	}
	return n, nil
}

// jsonText returns an entity image as JSON text, non-finite numbers as null.
func jsonText(m map[string]any) (*string, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(jsonReady(m))
	if err != nil {
		return nil, fmt.Errorf("entity to JSON: %w", err)
	}
	s := string(b)
	return &s, nil
}
