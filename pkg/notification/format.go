package notification

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"text/template"
	"time"
)

// Payload format names.
const (
	FormatNative   = "native"
	FormatTotogi   = "totogi"
	FormatTruphone = "truphone"
	FormatTemplate = "template"
)

// ContentTypeJSON is the content type of every built-in format.
const ContentTypeJSON = "application/json"

// Format renders notifications in one payload format.
type Format struct {
	name        string
	tmpl        *template.Template
	contentType string
}

// NewFormat returns the format called name. A template format takes the
// template's text and its content type (default application/json); the
// template is compiled here, so a bad one is refused when a destination
// is saved.
func NewFormat(name, templateBody, contentType string) (*Format, error) {
	switch name {
	case "", FormatNative:
		return &Format{name: FormatNative, contentType: ContentTypeJSON}, nil
	case FormatTotogi, FormatTruphone:
		return &Format{name: name, contentType: ContentTypeJSON}, nil
	case FormatTemplate:
		if templateBody == "" {
			return nil, errors.New("a template format needs a template body")
		}
		if contentType == "" {
			contentType = ContentTypeJSON
		}
		if _, _, err := mime.ParseMediaType(contentType); err != nil {
			return nil, fmt.Errorf("content type %q: %w", contentType, err)
		}
		t, err := ParseTemplate("payload", templateBody)
		if err != nil {
			return nil, err
		}
		f := &Format{name: name, tmpl: t, contentType: contentType}
		// Run it once on a sample, so that a template that can only fail
		// (calling a function wrongly) is refused at once.
		if _, _, err := f.Render(Sample()); err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("unknown payload format %q: want native, totogi, truphone or template", name)
}

// Render returns n's body in this format and its content type.
func (f *Format) Render(n *Notification) ([]byte, string, error) {
	var (
		b   []byte
		err error
	)
	switch f.name {
	case FormatTotogi:
		b, err = json.Marshal(Totogi(n))
	case FormatTruphone:
		var p truphonePayload
		if p, err = truphone(n); err == nil {
			b, err = json.Marshal(p)
		}
	case FormatTemplate:
		var buf bytes.Buffer
		if err = f.tmpl.Execute(&buf, n.Data()); err == nil {
			b = buf.Bytes()
			if isJSON(f.contentType) && !json.Valid(b) {
				err = errors.New("the template's output is not valid JSON")
			}
		}
	default:
		b, err = n.JSON()
	}
	if err != nil {
		return nil, "", fmt.Errorf("render notification %s as %s: %w", n.ID, f.name, err)
	}
	return b, f.contentType, nil
}

func isJSON(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// ParseTemplate compiles a tenant's template: Go text/template over the
// notification's native JSON form (Data), with a json function that writes
// a value as JSON.
func ParseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=zero").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	return t, nil
}

// Data returns the notification's native JSON form as generic values, what
// templates and callout parameters read (.name, .event.accountId,
// .new.remaining, …).
func (n *Notification) Data() map[string]any {
	b, err := n.JSON()
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return map[string]any{}
	}
	return m
}

// Sample returns a notification with every field set, for checking
// templates when they are saved.
func Sample() *Notification {
	s := func(v string) *string { return &v }
	th := 80.0
	return &Notification{
		ID: "00000000-0000-0000-0000-000000000000", TenantID: "tenant", RuleID: "rule", Name: "UnitAllowanceThreshold",
		State: "low", PrevState: s("ok"), Threshold: &th, OrderingKey: "acct-1", Ordered: true,
		CreatedAt: time.Unix(0, 0).UTC(),
		Event: EventRef{ID: "event", EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE",
			OccurredAt: time.Unix(0, 0).UTC(), AccountID: s("acct-1"), DeviceID: s("dev-1"), CorrelationID: s("session-1")},
		Old:    s(`{"remaining":300}`),
		New:    s(`{"remaining":150}`),
		Fields: map[string]string{"percent": "15"},
	}
}

// TotogiPayload is Totogi's notification structure: the webhook totogi
// format's body and the EventBridge totogi format's detail.
type TotogiPayload struct {
	ProviderID          string          `json:"providerid"`
	InvocationTimestamp string          `json:"invocationtimestamp"`
	Day                 int             `json:"day"`
	Month               int             `json:"month"`
	Year                int             `json:"year"`
	EventData           totogiEventData `json:"eventdata"`
}

type totogiEventData struct {
	AccountID               *string                `json:"accountid,omitempty"`
	DeviceID                *string                `json:"deviceid,omitempty"`
	ChargingInformation     *totogiCharging        `json:"charginginformation,omitempty"`
	NotificationInformation totogiNotificationInfo `json:"notificationInformation"`
}

type totogiCharging struct {
	ChargingSessionIdentifier string `json:"chargingsessionidentifier"`
}

type totogiNotificationInfo struct {
	Name               string                     `json:"name"`
	State              string                     `json:"state"`
	PrevState          *string                    `json:"prevstate,omitempty"`
	Threshold          *float64                   `json:"threshold,omitempty"`
	NotificationFields map[string]json.RawMessage `json:"notificationfields,omitempty"`
}

// Totogi maps a notification onto Totogi's structure: the tenant is the
// provider, the event's time is the invocation timestamp, the date parts
// are the notification's (UTC), and the correlation id is the charging
// session.
func Totogi(n *Notification) TotogiPayload {
	at := n.CreatedAt.UTC()
	p := TotogiPayload{
		ProviderID:          n.TenantID,
		InvocationTimestamp: n.Event.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Day:                 at.Day(), Month: int(at.Month()), Year: at.Year(),
		EventData: totogiEventData{
			AccountID: n.Event.AccountID,
			DeviceID:  n.Event.DeviceID,
			NotificationInformation: totogiNotificationInfo{
				Name: n.Name, State: n.State, PrevState: n.PrevState, Threshold: n.Threshold,
				NotificationFields: rawFields(n.Fields),
			},
		},
	}
	if n.Event.CorrelationID != nil {
		p.EventData.ChargingInformation = &totogiCharging{ChargingSessionIdentifier: *n.Event.CorrelationID}
	}
	return p
}

// truphonePayload is Truphone Connect's notification structure.
type truphonePayload struct {
	ID             string   `json:"id"`
	Type           string   `json:"type"`
	ICCID          string   `json:"iccid"`
	SubscriptionID string   `json:"subscription_id"`
	Threshold      *float64 `json:"threshold,omitempty"`
}

// truphone maps a notification onto Truphone's structure: the name is the
// type (USAGE_THRESHOLD, SUBSCRIPTION_END); iccid is the rule's field of
// that name, else the event's deviceId, else the entity's iccid;
// subscription_id is the rule's field of that name, else the entity's
// subscriptionId, else its planId. Truphone's payload needs both: without
// one, the error names it, and nothing else stands in for it.
func truphone(n *Notification) (truphonePayload, error) {
	iccid := n.pick([]string{"iccid"}, n.Event.DeviceID, []string{"iccid"})
	if iccid == "" {
		return truphonePayload{}, errors.New("no iccid: the rule computes no iccid field, the event has no deviceId and the entity no iccid")
	}
	sub := n.pick([]string{"subscription_id", "subscriptionId"}, nil, []string{"subscriptionId", "planId"})
	if sub == "" {
		return truphonePayload{}, errors.New("no subscription_id: the rule computes no subscription_id field and the entity has no subscriptionId or planId")
	}
	return truphonePayload{ID: n.ID, Type: n.Name, ICCID: iccid, SubscriptionID: sub, Threshold: n.Threshold}, nil
}

// pick returns the first non-empty string among the rule's fields, then
// the event's value, then the new and old entity's fields; "" when none
// has one.
func (n *Notification) pick(fields []string, event *string, entity []string) string {
	for _, k := range fields {
		if raw, ok := n.Fields[k]; ok {
			var s string
			if json.Unmarshal([]byte(raw), &s) == nil && s != "" {
				return s
			}
		}
	}
	if event != nil && *event != "" {
		return *event
	}
	for _, img := range []*string{n.New, n.Old} {
		if img == nil {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(*img), &m) != nil {
			continue
		}
		for _, k := range entity {
			if s, ok := m[k].(string); ok && s != "" {
				return s
			}
		}
	}
	return ""
}

func rawFields(f map[string]string) map[string]json.RawMessage {
	if len(f) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(f))
	for k, v := range f {
		out[k] = json.RawMessage(v)
	}
	return out
}
