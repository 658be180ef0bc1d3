package eventbridgesender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
)

// DefaultSource is an entry's source when the destination names none.
const DefaultSource = "herald.notifications"

// Limits of PutEvents.
const (
	// MaxEntries is the most entries one PutEvents call takes.
	MaxEntries = 10
	// MaxBatchBytes bounds the entries of one call, and so each entry, as
	// EventBridge measures them (entrySize).
	MaxBatchBytes = 256 << 10
	// maxDetailType is the longest detail-type EventBridge takes.
	maxDetailType = 128
)

// retryableCodes are the error codes, of an entry or of a whole call,
// that may pass on a later attempt; every other code is permanent.
var retryableCodes = map[string]bool{
	"ThrottlingException":    true,
	"InternalFailure":        true,
	"InternalException":      true,
	"KMSThrottlingException": true,
	"KMSInternalException":   true,
}

// Options configure the EventBridge channel.
type Options struct {
	// Linger is how long a call waits for more entries after its first.
	Linger time.Duration
	// Calls bounds the PutEvents calls in flight per client.
	Calls int
	// Timeout bounds one PutEvents call, its SDK retries included.
	Timeout time.Duration
	// Observe, when set, is told the entries of each PutEvents call made.
	Observe func(entries int)
	// Tracer, when set, gives each PutEvents call a span linked to the
	// attempt of every entry in it; nil means no spans.
	Tracer trace.Tracer
}

// EventBridge is the EventBridge channel: each delivery is one entry of a
// PutEvents call to the destination's bus, batched with other entries for
// the same region and credentials.
type EventBridge struct {
	clients *clients
	opts    Options

	// life ends the batchers at Close; calls under way finish first.
	life context.Context
	end  context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	batchers map[clientKey]*batcher
}

// NewEventBridge returns the channel. aws is the SDK configuration every
// client starts from (credentials chain, endpoints, HTTP client, retryer):
// LoadAWSConfig builds it.
func NewEventBridge(aws aws.Config, o Options) *EventBridge {
	life, end := context.WithCancel(context.Background())
	return &EventBridge{clients: newClients(aws), opts: o, life: life, end: end, batchers: map[clientKey]*batcher{}}
}

// Close stops the batchers once the calls under way have finished. Call
// it after the engine's Run returned.
func (eb *EventBridge) Close() {
	eb.mu.Lock()
	eb.end()
	eb.mu.Unlock()
	eb.wg.Wait()
}

// Deliver puts the notification on the destination's bus and waits for
// its entry's result.
func (eb *EventBridge) Deliver(ctx context.Context, d *delivery.Delivery) (delivery.Response, error) {
	dest := d.Destination.EventBridge
	if dest == nil {
		return delivery.Response{}, delivery.PermanentError("config", errors.New("not an EventBridge destination"))
	}
	bus, err := arn.Parse(dest.EventBusARN)
	if err != nil || bus.Service != "events" || bus.Region == "" || !strings.HasPrefix(bus.Resource, "event-bus/") {
		return delivery.Response{}, delivery.PermanentError("config", fmt.Errorf("event bus ARN %q is not one", dest.EventBusARN))
	}
	e, err := newEntry(d.Notification, dest)
	if err != nil {
		return delivery.Response{}, err
	}
	e.attempt = trace.SpanContextFromContext(ctx)
	key := clientKey{region: bus.Region, role: dest.RoleARN}
	if dest.RoleARN != "" {
		key.externalID = dest.ExternalID
	}
	for {
		b := eb.batcher(key)
		if b == nil {
			return delivery.Response{}, fmt.Errorf("the EventBridge channel is closed: %w", context.Canceled)
		}
		select {
		case b.in <- e:
		case <-b.done:
			continue // it retired while idle; the next call makes a new one
		case <-ctx.Done():
			return delivery.Response{}, ctx.Err()
		}
		select {
		case r := <-e.result:
			return r.response, r.err
		case <-ctx.Done():
			return delivery.Response{}, ctx.Err()
		}
	}
}

// batcher returns the batcher of key's client, starting one if needed;
// nil once the channel is closed.
func (eb *EventBridge) batcher(key clientKey) *batcher {
	eb.mu.Lock()
	defer eb.mu.Unlock()
	if eb.life.Err() != nil {
		return nil
	}
	if b, ok := eb.batchers[key]; ok {
		return b
	}
	b := newBatcher(eb.clients.get(key), eb.opts, func(b *batcher) bool {
		// A Deliver that holds b already sees b.done closed and asks
		// again.
		eb.mu.Lock()
		defer eb.mu.Unlock()
		if eb.batchers[key] == b {
			delete(eb.batchers, key)
		}
		return true
	})
	eb.batchers[key] = b
	eb.wg.Go(func() { b.run(eb.life) })
	return b
}

// entry is one notification's PutEvents entry and where its result goes.
type entry struct {
	put    types.PutEventsRequestEntry
	size   int
	result chan result
	// attempt is the span of the delivery attempt the entry belongs to.
	attempt trace.SpanContext
}

type result struct {
	response delivery.Response
	err      error
}

// totogiDetail is Totogi's notification structure with the notification
// id, which receivers use to drop duplicates.
type totogiDetail struct {
	NotificationID string `json:"notificationid"`
	notification.TotogiPayload
}

// Detail returns the entry detail of n in format: Totogi's structure with
// the notification id (totogi, the default), or Herald's native JSON,
// which has it as id (native).
func Detail(n *notification.Notification, format string) ([]byte, error) {
	switch format {
	case "", notification.FormatTotogi:
		return json.Marshal(totogiDetail{NotificationID: n.ID, TotogiPayload: notification.Totogi(n)})
	case notification.FormatNative:
		return n.JSON()
	}
	return nil, fmt.Errorf("unknown detail format %q: want totogi or native", format)
}

// newEntry builds n's entry for dest: source and detail-type from the
// destination (defaults: DefaultSource and the notification's name), the
// notification's creation time, so that every copy of it is the same.
func newEntry(n *notification.Notification, dest *configstore.EventBridgeDestination) (*entry, error) {
	detail, err := Detail(n, dest.Format)
	if err != nil {
		return nil, delivery.PermanentError("config", err)
	}
	source := dest.Source
	if source == "" {
		source = DefaultSource
	}
	detailType := dest.DetailType
	if detailType == "" {
		detailType = n.Name
	}
	if utf8.RuneCountInString(detailType) > maxDetailType {
		return nil, delivery.PermanentError("payload", fmt.Errorf("detail-type %q is longer than %d characters", detailType, maxDetailType))
	}
	e := &entry{
		put: types.PutEventsRequestEntry{
			EventBusName: aws.String(dest.EventBusARN),
			Source:       aws.String(source),
			DetailType:   aws.String(detailType),
			Detail:       aws.String(string(detail)),
			Time:         aws.Time(n.CreatedAt),
		},
		result: make(chan result, 1),
	}
	e.size = entrySize(e.put)
	if e.size > MaxBatchBytes {
		return nil, delivery.PermanentError("payload", fmt.Errorf("the entry is %d bytes; PutEvents takes at most %d", e.size, MaxBatchBytes))
	}
	return e, nil
}

// entrySize is an entry's size as EventBridge counts it against the
// PutEvents limit: 14 bytes for a time, and the UTF-8 bytes of the
// source, detail-type, detail and resources.
func entrySize(e types.PutEventsRequestEntry) int {
	n := len(aws.ToString(e.Source)) + len(aws.ToString(e.DetailType)) + len(aws.ToString(e.Detail))
	if e.Time != nil {
		n += 14
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// entryOutcome says what an entry's result means.
func entryOutcome(r types.PutEventsResultEntry) result {
	excerpt, _ := json.Marshal(r)
	resp := delivery.Response{StatusCode: http.StatusOK, Excerpt: excerpt}
	code := aws.ToString(r.ErrorCode)
	switch {
	case code == "" && aws.ToString(r.EventId) != "":
		return result{response: resp}
	case code == "":
		return result{response: resp, err: delivery.RetryError("no-event-id", errors.New("EventBridge answered neither an event id nor an error"))}
	}
	err := fmt.Errorf("entry failed: %s: %s", code, aws.ToString(r.ErrorMessage))
	if retryableCodes[code] {
		return result{response: resp, err: delivery.RetryError(code, err)}
	}
	return result{response: resp, err: delivery.PermanentError(code, err)}
}

// callOutcome says what a failed PutEvents call means for each of its
// entries; backoff is how long a throttled call's client waits.
func callOutcome(err error, backoff time.Duration) result {
	var resp delivery.Response
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		resp.StatusCode = re.HTTPStatusCode()
	}
	var api smithy.APIError
	hasCode := errors.As(err, &api)
	if hasCode {
		resp.Excerpt, _ = json.Marshal(map[string]string{"ErrorCode": api.ErrorCode(), "ErrorMessage": api.ErrorMessage()})
	}
	var ce *credentialsError
	switch {
	case errors.As(err, &ce):
		// The role's trust policy refusing Herald (or the external id)
		// holds until the tenant changes it; anything else, such as STS
		// out of reach, may pass.
		if hasCode && api.ErrorCode() == "AccessDenied" {
			return result{response: resp, err: delivery.PermanentError("credentials", err)}
		}
		return result{response: resp, err: delivery.RetryError("credentials", err)}
	case hasCode && isThrottle(err):
		return result{response: resp, err: delivery.RetryAfterError(api.ErrorCode(), backoff, err)}
	case hasCode && (retryableCodes[api.ErrorCode()] || resp.StatusCode >= 500):
		return result{response: resp, err: delivery.RetryError(api.ErrorCode(), err)}
	case hasCode:
		return result{response: resp, err: delivery.PermanentError(api.ErrorCode(), err)}
	case errors.Is(err, context.Canceled):
		return result{response: resp, err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return result{response: resp, err: delivery.RetryError("timeout", err)}
	case resp.StatusCode >= 500:
		return result{response: resp, err: delivery.RetryError("status", err)}
	}
	return result{response: resp, err: delivery.RetryError("network", err)}
}
