package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// Channel delivers one notification to one destination: a webhook POST, an
// email, an EventBridge entry. It is all the engine asks of a sender.
type Channel interface {
	// Deliver makes one attempt. A nil error means delivered; otherwise the
	// error says what to do next (see AttemptError). Response carries what
	// the far end answered, for the attempt log, in both cases.
	Deliver(ctx context.Context, d *Delivery) (Response, error)
}

// Delivery is one attempt's input.
type Delivery struct {
	Notification  *notification.Notification
	DestinationID string
	Destination   configstore.Destination
	// Attempt counts from 1; a redelivery starts again at 1.
	Attempt int
}

// Response is what the far end answered.
type Response struct {
	StatusCode int
	// Excerpt is the start of the response body; the engine keeps at most
	// MaxExcerpt bytes.
	Excerpt []byte
}

// MaxExcerpt bounds the response excerpt kept in the attempt log.
const MaxExcerpt = 4 << 10

// Kind is what an attempt's failure means for the delivery.
type Kind int

// Kinds of failure.
const (
	// Retry: the failure may pass; try again on the schedule, or after
	// the delay the endpoint asked for.
	Retry Kind = iota
	// Permanent: trying again cannot help; dead-letter it.
	Permanent
	// Gone: the destination no longer exists; disable it and
	// dead-letter the delivery.
	Gone
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	}
	return "retry"
}

// AttemptError is a failed attempt, classified by the channel.
type AttemptError struct {
	Kind Kind
	// Class names the cause in the attempt log: timeout, connect, status,
	// redirect, forbidden-address, …
	Class string
	// After is the wait the far end asked for (Retry-After), if any.
	After time.Duration
	Err   error
}

func (e *AttemptError) Error() string {
	return fmt.Sprintf("%s (%s): %v", e.Class, e.Kind, e.Err)
}

func (e *AttemptError) Unwrap() error { return e.Err }

// RetryError returns a failure that may pass.
func RetryError(class string, err error) error {
	return &AttemptError{Kind: Retry, Class: class, Err: err}
}

// RetryAfterError returns a failure whose endpoint asked to wait d.
func RetryAfterError(class string, d time.Duration, err error) error {
	return &AttemptError{Kind: Retry, Class: class, After: d, Err: err}
}

// PermanentError returns a failure that retrying cannot fix.
func PermanentError(class string, err error) error {
	return &AttemptError{Kind: Permanent, Class: class, Err: err}
}

// GoneError returns a failure that says the destination is gone for good.
func GoneError(class string, err error) error {
	return &AttemptError{Kind: Gone, Class: class, Err: err}
}

// classify returns what err means. Errors a channel did not classify are
// retried.
func classify(err error) *AttemptError {
	var ae *AttemptError
	if errors.As(err, &ae) {
		return ae
	}
	return &AttemptError{Kind: Retry, Class: "error", Err: err}
}
