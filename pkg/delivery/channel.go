package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
)

// Channel delivers one notification to one destination: a webhook POST, an
// email, an EventBridge entry. It is all the engine asks of a sender.
type Channel interface {
	// Deliver makes one attempt. A nil error means delivered; otherwise the
	// error says what to do next (see AttemptError). Response carries what
	// the far end answered, for the attempt log, in both cases. d is the
	// engine's again once Deliver returns: it is reused for the next
	// attempt, so Deliver keeps nothing of it but the notification.
	Deliver(ctx context.Context, d *Delivery) (Response, error)
}

// Delivery is one attempt's input.
type Delivery struct {
	Notification  *notification.Notification
	DestinationID string
	Destination   configstore.Destination
	// Attempt counts from 1; a redelivery starts again at 1.
	Attempt int
	// payloads holds the notification's renderings, shared by its
	// destinations and attempts; nil renders on every call.
	payloads *payloads
}

// Render returns the notification rendered by f, as f.Render does: once
// per format for all the notification's destinations and attempts when
// the engine made d. The body is shared; the caller must not change it.
func (d *Delivery) Render(f *notification.Format) ([]byte, string, error) {
	if d.payloads == nil {
		return f.Render(d.Notification)
	}
	return d.payloads.render(f, d.Notification)
}

// payloads holds one notification rendered in the formats its
// destinations ask for.
type payloads struct {
	mu sync.Mutex
	// by holds a rendering per format; a notification's destinations
	// seldom use more than one or two.
	by []payload
}

type payload struct {
	format      *notification.Format
	body        []byte
	contentType string
	err         error
}

func (p *payloads) render(f *notification.Format, n *notification.Notification) ([]byte, string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.IndexFunc(p.by, func(r payload) bool { return r.format == f })
	if i < 0 {
		r := payload{format: f}
		r.body, r.contentType, r.err = f.Render(n)
		p.by = append(p.by, r)
		i = len(p.by) - 1
	}
	r := p.by[i]
	return r.body, r.contentType, r.err
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
