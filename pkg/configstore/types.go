package configstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Document kinds.
const (
	KindTenant      = "tenant"
	KindAPIKey      = "apikey"
	KindRule        = "rule"
	KindDestination = "destination"
)

// OperatorTenant is the tenant part of keys of documents that belong to no
// tenant, such as tenants themselves.
const OperatorTenant = "_"

// Tenant is an organisation using Herald; its id is the document id.
type Tenant struct {
	Name string `json:"name"`
}

// APIKey is a tenant's API key. Only its hash is stored.
type APIKey struct {
	Name   string   `json:"name"`
	Hash   string   `json:"hash"`
	Prefix string   `json:"prefix"` // the first characters, to tell keys apart
	Scopes []string `json:"scopes"`
}

// HashAPIKey returns the stored form of a key.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Rule turns matching entity-change events into notifications.
type Rule struct {
	Name         string       `json:"name"`
	Enabled      *bool        `json:"enabled,omitempty"`
	On           RuleOn       `json:"on"`
	When         string       `json:"when"`
	Notification RuleNotify   `json:"notification"`
	Destinations []string     `json:"destinations"`
	Ordering     OrderingMode `json:"ordering,omitempty"`
	// OrderingKey is a CEL expression giving the key that orders the
	// rule's notifications; empty means the event's partition key.
	OrderingKey string `json:"orderingKey,omitempty"`
}

// IsEnabled reports whether the rule is evaluated; rules are enabled unless
// switched off.
func (r Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// RuleOn says which events a rule watches.
type RuleOn struct {
	EntityTypes []string `json:"entityTypes"`
	Operations  []string `json:"operations,omitempty"` // empty: all
}

// RuleNotify describes the notification a rule emits.
type RuleNotify struct {
	Name      string            `json:"name"`
	State     string            `json:"state"`
	PrevState string            `json:"prevState,omitempty"`
	Threshold *float64          `json:"threshold,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"` // name → CEL expression
}

// OrderingMode says whether a rule's notifications are delivered in order
// of their ordering key.
type OrderingMode string

// Ordering modes.
const (
	Keyed     OrderingMode = "keyed"
	Unordered OrderingMode = "unordered"
)

// Destination is where notifications go.
type Destination struct {
	Type    string              `json:"type"` // webhook
	Name    string              `json:"name"`
	Webhook *WebhookDestination `json:"webhook,omitempty"`
}

// WebhookDestination is an HTTP endpoint that receives notifications as POSTs.
type WebhookDestination struct {
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

func decodeSpec(kind string, raw json.RawMessage) (any, error) {
	switch kind {
	case KindTenant:
		return decodeAs[Tenant](raw)
	case KindAPIKey:
		return decodeAs[APIKey](raw)
	case KindRule:
		return decodeAs[Rule](raw)
	case KindDestination:
		return decodeAs[Destination](raw)
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

func decodeAs[T any](raw json.RawMessage) (any, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

// Spec returns the document's spec as its kind's type. It panics if T is not
// the type of the document's kind.
func Spec[T any](d Document) T { return d.value.(T) }

// NewDocument builds a document of a kind from its spec.
func NewDocument(tenant, kind, id string, spec any) (Document, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return Document{}, err
	}
	return Document{Tenant: tenant, Kind: kind, ID: id, Spec: raw}, nil
}

// APIKeyByHash returns the API key document whose hash is hash.
func (s *Store) APIKeyByHash(hash string) (Document, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.apiKeys[hash]
	return d, ok
}
