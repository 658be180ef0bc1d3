package delivery

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers of records on the retry and dead-letter topics. The value is the
// notification's Avro record, unchanged.
const (
	HeaderDestination = "herald-destination"
	// HeaderAttempt is the number of attempts made so far.
	HeaderAttempt = "herald-attempt"
	// HeaderNextAttemptAt is when the next attempt is due, Unix
	// milliseconds; absent or 0 means at once.
	HeaderNextAttemptAt = "herald-next-attempt-at"
	// HeaderOrdered is "true" for a parked delivery of a keyed
	// destination, which waits for the ones before it.
	HeaderOrdered    = "herald-ordered"
	HeaderErrorClass = "herald-error-class"
	HeaderError      = "herald-error"
	// HeaderOrigin is where the notification was first read:
	// topic/partition/offset.
	HeaderOrigin = "herald-origin"
)

// Attempt is one delivery attempt as the deliveries topic records it
// (Avro herald.DeliveryAttempt).
type Attempt struct {
	NotificationID  string     `avro:"notificationId" json:"notificationId"`
	TenantID        string     `avro:"tenantId" json:"-"`
	DestinationID   string     `avro:"destinationId" json:"destinationId"`
	Channel         string     `avro:"channel" json:"channel"`
	Attempt         int32      `avro:"attempt" json:"attempt"`
	StartedAt       time.Time  `avro:"startedAt" json:"startedAt"`
	LatencyMs       int64      `avro:"latencyMs" json:"latencyMs"`
	Outcome         string     `avro:"outcome" json:"outcome"`
	StatusCode      *int32     `avro:"statusCode" json:"statusCode,omitempty"`
	ErrorClass      *string    `avro:"errorClass" json:"errorClass,omitempty"`
	Error           *string    `avro:"error" json:"error,omitempty"`
	ResponseExcerpt *string    `avro:"responseExcerpt" json:"responseExcerpt,omitempty"`
	NextAttemptAt   *time.Time `avro:"nextAttemptAt" json:"nextAttemptAt,omitempty"`
	DeadLettered    bool       `avro:"deadLettered" json:"deadLettered"`
	OriginTopic     string     `avro:"originTopic" json:"-"`
	OriginPartition int32      `avro:"originPartition" json:"-"`
	OriginOffset    int64      `avro:"originOffset" json:"-"`
}

// Outcomes recorded in Attempt.Outcome.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomePermanent = "permanent"
	OutcomeGone      = "gone"
	// OutcomeSkipped: no attempt was made (the destination is disabled
	// or deleted).
	OutcomeSkipped = "skipped"
)

// Origin is where a notification was first read.
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
}

func (o Origin) String() string { return fmt.Sprintf("%s/%d/%d", o.Topic, o.Partition, o.Offset) }

// ParseOrigin reads an origin header.
func ParseOrigin(s string) (Origin, error) {
	i := strings.LastIndexByte(s, '/')
	j := strings.LastIndexByte(s[:max(i, 0)], '/')
	if i < 0 || j < 0 {
		return Origin{}, fmt.Errorf("origin %q is not topic/partition/offset", s)
	}
	p, err1 := strconv.ParseInt(s[j+1:i], 10, 32)
	o, err2 := strconv.ParseInt(s[i+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return Origin{}, fmt.Errorf("origin %q is not topic/partition/offset", s)
	}
	return Origin{Topic: s[:j], Partition: int32(p), Offset: o}, nil
}

// Entry is a delivery on a retry or dead-letter topic, read from its
// headers.
type Entry struct {
	Destination string
	Attempts    int
	Due         time.Time
	Ordered     bool
	ErrorClass  string
	Error       string
	Origin      Origin
}

// Headers returns the entry as record headers.
func (e Entry) Headers() []kgo.RecordHeader {
	h := []kgo.RecordHeader{
		{Key: HeaderDestination, Value: []byte(e.Destination)},
		{Key: HeaderAttempt, Value: strconv.AppendInt(nil, int64(e.Attempts), 10)},
		{Key: HeaderOrdered, Value: strconv.AppendBool(nil, e.Ordered)},
		{Key: HeaderOrigin, Value: []byte(e.Origin.String())},
	}
	if !e.Due.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderNextAttemptAt, Value: strconv.AppendInt(nil, e.Due.UnixMilli(), 10)})
	}
	if e.ErrorClass != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderErrorClass, Value: []byte(e.ErrorClass)})
	}
	if e.Error != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderError, Value: []byte(e.Error)})
	}
	return h
}

// ParseEntry reads an entry from a record's headers.
func ParseEntry(r *kgo.Record) (Entry, error) {
	var e Entry
	var err error
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderDestination:
			e.Destination = v
		case HeaderAttempt:
			e.Attempts, err = strconv.Atoi(v)
		case HeaderNextAttemptAt:
			var ms int64
			if ms, err = strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				e.Due = time.UnixMilli(ms)
			}
		case HeaderOrdered:
			e.Ordered = v == "true"
		case HeaderErrorClass:
			e.ErrorClass = v
		case HeaderError:
			e.Error = v
		case HeaderOrigin:
			e.Origin, err = ParseOrigin(v)
		}
		if err != nil {
			return e, fmt.Errorf("header %s: %w", h.Key, err)
		}
	}
	if e.Destination == "" {
		return e, fmt.Errorf("no %s header", HeaderDestination)
	}
	return e, nil
}
