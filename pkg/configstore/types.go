package configstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
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
	// TimeZone is the tenant's IANA time zone, in which rules place local
	// times of day; empty means UTC.
	TimeZone string `json:"timeZone,omitempty"`
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
	// At is a CEL expression giving when the rule's timer for an entity is
	// due (a timestamp, or null for no timer). A rule with At fires when
	// the timer comes due, judged on the entity's latest state, rather
	// than on the change.
	At string `json:"at,omitempty"`
	// TimerFor is a CEL expression giving the id of the entity, of the
	// rule's first entity type, whose timer an event sets (a string, or
	// null for none); empty means the event's own entity. Only with At.
	TimerFor string `json:"timerFor,omitempty"`
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
	Name      string   `json:"name"`
	State     string   `json:"state"`
	PrevState string   `json:"prevState,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	// PrevStateExpr is a CEL expression giving the previous state of each
	// notification (a string; null or "" for none), for a rule whose
	// previous state depends on the event; a rule gives it or PrevState,
	// not both.
	PrevStateExpr string `json:"prevStateExpr,omitempty"`
	// ThresholdExpr is a CEL expression giving the threshold of each
	// notification (a number, or null for none), for a rule whose threshold
	// depends on the event; a rule gives it or Threshold, not both.
	ThresholdExpr string            `json:"thresholdExpr,omitempty"`
	Fields        map[string]string `json:"fields,omitempty"` // name → CEL expression
}

// OrderingMode says whether a rule's notifications are delivered in order
// of their ordering key.
type OrderingMode string

// Ordering modes.
const (
	Keyed     OrderingMode = "keyed"
	Unordered OrderingMode = "unordered"
)

// Destination is where notifications go. Type names the channel that
// delivers to it; the fields outside the channel's own part apply to every
// channel.
type Destination struct {
	Type        string                  `json:"type"` // webhook, email or eventbridge
	Name        string                  `json:"name"`
	Webhook     *WebhookDestination     `json:"webhook,omitempty"`
	Email       *EmailDestination       `json:"email,omitempty"`
	EventBridge *EventBridgeDestination `json:"eventbridge,omitempty"`

	// Operational destinations receive Herald's notices about the tenant's
	// own setup, such as DestinationDisabled.
	Operational bool `json:"operational,omitempty"`
	// RetrySchedule replaces the global retry schedule: the wait before
	// each attempt, the first usually "0s" (Go durations).
	RetrySchedule []string `json:"retrySchedule,omitempty"`
	// Concurrency bounds the attempts in flight to this destination; 0
	// means the sender's default.
	Concurrency int `json:"concurrency,omitempty"`
	// RatePerSecond bounds the attempts started per second; 0 means no
	// limit.
	RatePerSecond float64 `json:"ratePerSecond,omitempty"`
	// Disabled is set when Herald stopped delivering to the destination.
	Disabled *DisabledState `json:"disabled,omitempty"`
}

// DisabledState says when and why a destination was disabled.
type DisabledState struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Payload formats of a webhook destination.
const (
	FormatNative   = "native"
	FormatTotogi   = "totogi"
	FormatTruphone = "truphone"
	FormatTemplate = "template"
)

// WebhookDestination is an HTTP endpoint that receives notifications as POSTs.
type WebhookDestination struct {
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	// Parameters are name/value pairs added to the callout's query string;
	// a value may use the template syntax of PayloadTemplate.
	Parameters []Parameter `json:"parameters,omitempty"`
	// Format is the payload format: native (the default), totogi,
	// truphone or template.
	Format   string           `json:"format,omitempty"`
	Template *PayloadTemplate `json:"template,omitempty"`
	// Secrets sign each request (Standard Webhooks). The newest is the
	// current one; during a rotation the previous one stays live until it
	// expires, and both sign.
	Secrets []SigningSecret `json:"secrets,omitempty"`
}

// EmailDestination sends each notification as a canned email (LogiSense's
// email notifications).
type EmailDestination struct {
	// TemplateID names the email template rendered per notification.
	TemplateID string `json:"templateId"`
	// SMTPProfileID picks the SMTP profile; empty means the template's,
	// else the tenant's default.
	SMTPProfileID string `json:"smtpProfileId,omitempty"`
	// To, Cc and Bcc are fixed addresses.
	To  []string `json:"to,omitempty"`
	Cc  []string `json:"cc,omitempty"`
	Bcc []string `json:"bcc,omitempty"`
	// ToContactTypes, CcContactTypes and BccContactTypes add the contact
	// of each type on the notification's account (event.accountId),
	// resolved when the email is sent.
	ToContactTypes  []string `json:"toContactTypes,omitempty"`
	CcContactTypes  []string `json:"ccContactTypes,omitempty"`
	BccContactTypes []string `json:"bccContactTypes,omitempty"`
}

// EventBridgeDestination puts each notification on a tenant's Amazon
// EventBridge bus (Totogi's notification delivery).
type EventBridgeDestination struct {
	// EventBusARN is the tenant's bus:
	// arn:<partition>:events:<region>:<account>:event-bus/<name>. The
	// region comes from it.
	EventBusARN string `json:"eventBusArn"`
	// Source is each entry's source; default herald.notifications.
	Source string `json:"source,omitempty"`
	// DetailType is each entry's detail-type; default the notification's
	// name.
	DetailType string `json:"detailType,omitempty"`
	// Format of the detail: totogi (the default) or native.
	Format string `json:"format,omitempty"`
	// RoleARN, when set, is assumed (with ExternalID) to put the events.
	RoleARN string `json:"roleArn,omitempty"`
	// ExternalID is the secret the tenant's role trust policy asks for;
	// sealed in the config topic, never shown after creation.
	ExternalID string `json:"externalId,omitempty"`
}

// Parameter is one name/value pair added to a webhook callout.
type Parameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// PayloadTemplate is a tenant's own payload: a Go text/template over the
// notification's native JSON form.
type PayloadTemplate struct {
	Body        string `json:"body"`
	ContentType string `json:"contentType,omitempty"` // default application/json
}

// SigningSecret is one webhook signing secret, "whsec_" and base64.
type SigningSecret struct {
	Secret    string     `json:"secret"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// LiveSecrets returns the secrets that sign at t, newest first.
func (w *WebhookDestination) LiveSecrets(t time.Time) []string {
	var out []string
	for i := len(w.Secrets) - 1; i >= 0; i-- {
		s := w.Secrets[i]
		if s.ExpiresAt == nil || t.Before(*s.ExpiresAt) {
			out = append(out, s.Secret)
		}
	}
	return out
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
	case KindSMTPProfile:
		return decodeAs[SMTPProfile](raw)
	case KindSMTPDefault:
		return decodeAs[SMTPDefault](raw)
	case KindEmailTemplate:
		return decodeAs[EmailTemplate](raw)
	case KindContact:
		return decodeAs[Contact](raw)
	case KindSubscriptionSettings:
		return decodeAs[SubscriptionSettings](raw)
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
