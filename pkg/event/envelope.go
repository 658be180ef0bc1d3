package event

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/avro"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/schemas"
)

// Event is an entity-change event as upstream systems post it.
type Event struct {
	EventID       string         `json:"eventId"`
	EntityType    string         `json:"entityType"`
	EntityID      string         `json:"entityId"`
	Operation     string         `json:"operation"`
	OccurredAt    string         `json:"occurredAt"` // RFC 3339; default: now
	AccountID     *string        `json:"accountId"`
	DeviceID      *string        `json:"deviceId"`
	CorrelationID *string        `json:"correlationId"`
	Old           map[string]any `json:"old"`
	New           map[string]any `json:"new"`
}

var (
	entityTypePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
)

const maxIDLen = 256

// Check reports the envelope's problems, each named by its field.
func (e *Event) Check() []httpapi.FieldError {
	var errs []httpapi.FieldError
	add := func(field, msg string) { errs = append(errs, httpapi.FieldError{Field: field, Message: msg}) }
	if !entityTypePattern.MatchString(e.EntityType) {
		add("entityType", "required: a letter, then up to 63 letters, digits or underscores")
	}
	if e.EntityID == "" || len(e.EntityID) > maxIDLen {
		add("entityId", fmt.Sprintf("required, at most %d bytes", maxIDLen))
	}
	if len(e.EventID) > maxIDLen {
		add("eventId", fmt.Sprintf("at most %d bytes", maxIDLen))
	}
	if e.OccurredAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err != nil {
			add("occurredAt", "must be an RFC 3339 time, such as 2026-03-04T05:06:07Z")
		}
	}
	if !slices.Contains(Operations, e.Operation) {
		add("operation", "must be CREATE, UPDATE or DELETE")
	}
	switch e.Operation {
	case "CREATE":
		if e.New == nil {
			add("new", "required on CREATE")
		}
		if e.Old != nil {
			add("old", "must be absent on CREATE")
		}
	case "UPDATE":
		if e.Old == nil {
			add("old", "required on UPDATE")
		}
		if e.New == nil {
			add("new", "required on UPDATE")
		}
	case "DELETE":
		if e.Old == nil {
			add("old", "required on DELETE")
		}
		if e.New != nil {
			add("new", "must be absent on DELETE")
		}
	}
	return errs
}

// Encode checks e, fills its defaults (event id, time), and returns the
// record key and the Confluent wire-format value it has on the events
// topic, encoded with the latest schema of its entity type. Errors a
// producer can fix are *httpapi.Problem, with field paths after prefix.
func Encode(ctx context.Context, reg *havro.Registry, eventsTopic, tenant string, e *Event, prefix string) (key, value []byte, err error) {
	invalid := func(status int, detail string, errs ...httpapi.FieldError) error {
		for i := range errs {
			errs[i].Field = prefix + errs[i].Field
		}
		return httpapi.NewProblem(status, detail, errs...)
	}
	if errs := e.Check(); len(errs) > 0 {
		return nil, nil, invalid(http.StatusBadRequest, "the event is not valid", errs...)
	}
	schema, err := reg.Latest(ctx, Subject(eventsTopic, e.EntityType))
	if errors.Is(err, havro.ErrSubjectNotFound) {
		return nil, nil, invalid(http.StatusUnprocessableEntity, "no schema is registered for this entity type",
			httpapi.FieldError{Field: "entityType", Message: fmt.Sprintf("unknown entity type %q", e.EntityType)})
	}
	if err != nil {
		return nil, nil, err
	}
	if e.EventID == "" {
		e.EventID = ulid.Make().String()
	}
	envelope, err := havro.Check(schema.Schema, e.envelope(tenant))
	var (
		uf *havro.UnknownFieldError
		fe *havro.FieldError
	)
	switch {
	case errors.As(err, &uf):
		return nil, nil, invalid(http.StatusBadRequest, "the event does not match the schema of "+e.EntityType,
			httpapi.FieldError{Field: uf.Field, Message: "not a field of " + e.EntityType})
	case errors.As(err, &fe):
		return nil, nil, invalid(http.StatusBadRequest, "the event does not match the schema of "+e.EntityType,
			httpapi.FieldError{Field: fe.Field, Message: fe.Message})
	case err != nil:
		return nil, nil, err
	}
	value, err = schema.Encode(envelope)
	if err != nil {
		var se *avro.SemanticError
		if errors.As(err, &se) {
			return nil, nil, invalid(http.StatusBadRequest, "the event does not match the schema of "+e.EntityType,
				httpapi.FieldError{Field: se.Field, Message: schemaMessage(se)})
		}
		return nil, nil, invalid(http.StatusBadRequest, "the event does not match the schema of "+e.EntityType,
			httpapi.FieldError{Field: "", Message: err.Error()})
	}
	acct, _ := optional(e.AccountID).(string)
	return RecordKey(tenant, PartitionKey(acct, e.EntityType, e.EntityID)), value, nil
}

// Subject returns the registry subject of an entity type's events on the
// events topic (TopicRecordNameStrategy).
func Subject(eventsTopic, entityType string) string {
	return eventsTopic + "-" + schemas.EventRecordName(entityType)
}

// envelope is the event as the Avro encoder takes it.
func (e *Event) envelope(tenant string) map[string]any {
	occurred := time.Now().UTC()
	if e.OccurredAt != "" {
		occurred, _ = time.Parse(time.RFC3339Nano, e.OccurredAt) // checked by Check
	}
	return map[string]any{
		"eventId":       e.EventID,
		"tenantId":      tenant,
		"entityType":    e.EntityType,
		"entityId":      e.EntityID,
		"operation":     e.Operation,
		"occurredAt":    occurred,
		"accountId":     optional(e.AccountID),
		"deviceId":      optional(e.DeviceID),
		"correlationId": optional(e.CorrelationID),
		"old":           image(e.Old),
		"new":           image(e.New),
	}
}

func schemaMessage(se *avro.SemanticError) string {
	// A record missing one of its fields is reported against the field.
	if se.AvroType == "record" && se.Err != nil && strings.Contains(se.Err.Error(), "missing key") {
		return "required"
	}
	if se.Err != nil {
		return fmt.Sprintf("must be %s: %v", se.AvroType, se.Err)
	}
	return "must be " + se.AvroType
}

func optional(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// image keeps an absent entity image a nil interface, which Avro encodes
// as the union's null branch.
func image(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}
