package webhooksender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/telemetry"
	"github.com/heraldhq/herald/pkg/webhook"
)

// drainLimit bounds how much of a response is read past the excerpt, so
// that a small answer leaves its connection reusable and a large one is
// cut off.
const drainLimit = 64 << 10

// Webhook is the webhook channel: one signed HTTPS POST per delivery.
type Webhook struct {
	policy *egress.Policy
	// transport posts the requests itself: an http.Client would only add
	// what a webhook does not use (following redirects, which a webhook
	// never does, costs a copy of each request's headers and URL) and a
	// timer of its own for the timeout, which the attempt's context
	// deadline gives.
	transport *http.Transport
	deadlines deadlines // bound each attempt by the timeout

	// What the channel makes of a destination's settings, kept: they
	// change rarely, and each delivery would otherwise make it again.
	formats memo[formatResult] // by format and template
	checked memo[error]        // the egress check, by URL
}

type formatResult struct {
	f   *notification.Format
	err error
}

// memo keeps the results of a function of its key, up to 10,000 keys.
type memo[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

// get returns the result kept for key, or f's, which it keeps.
func (c *memo[V]) get(key string, f func() V) V {
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = f()
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 10000 {
		c.m = map[string]V{} // keep it bounded
	}
	c.m[key] = v
	c.mu.Unlock()
	return v
}

// NewWebhook returns the channel. Connections go through the egress policy
// after DNS resolution; the pool keeps up to conns idle connections per
// host; timeout bounds an attempt from dial to the end of the response
// (an attempt may have up to deadlineGrain more).
// rootCAs, when set, replaces the system roots (tests).
func NewWebhook(policy *egress.Policy, conns int, timeout time.Duration, rootCAs *x509.CertPool) *Webhook {
	dialer := policy.Dialer(net.Dialer{Timeout: min(timeout, 5*time.Second), KeepAlive: 30 * time.Second})
	transport := &http.Transport{
		DialContext:         dialer.DialContext,
		Proxy:               nil, // a proxy would make the connection check meaningless
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs},
		TLSHandshakeTimeout: min(timeout, 5*time.Second),
		// No ResponseHeaderTimeout: the attempt's deadline, the same
		// value, bounds the whole attempt, headers included, without a
		// second timer a request.
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Webhook{policy: policy, transport: transport, deadlines: deadlines{timeout: timeout}}
}

// Close releases idle connections and the attempts' deadline.
func (w *Webhook) Close() {
	w.transport.CloseIdleConnections()
	w.deadlines.close()
}

// Deliver posts the notification to the destination.
func (w *Webhook) Deliver(ctx context.Context, d *delivery.Delivery) (delivery.Response, error) {
	wh := d.Destination.Webhook
	if wh == nil {
		return delivery.Response{}, delivery.PermanentError("config", errors.New("not a webhook destination"))
	}
	// Without a resolver the check depends on the URL alone; the dialer
	// checks each address the name resolves to.
	err := w.checked.get(wh.URL, func() error { return w.policy.CheckURL(ctx, nil, wh.URL) })
	if err != nil {
		return delivery.Response{}, delivery.PermanentError("forbidden-address", err)
	}
	// The deadline bounds the attempt from the dial to the end of the
	// response's body.
	now := time.Now()
	ctx, cancel := w.deadlines.bound(ctx, now)
	defer cancel()
	req, err := w.request(ctx, d, wh, now)
	if err != nil {
		return delivery.Response{}, err
	}
	// Redirects are not followed: a 3xx is a failed attempt.
	resp, err := w.transport.RoundTrip(req)
	if err != nil {
		return delivery.Response{}, classifyError(err)
	}
	defer resp.Body.Close()
	out := delivery.Response{StatusCode: resp.StatusCode}
	if resp.ContentLength != 0 { // most answers to a webhook have no body
		out.Excerpt, _ = io.ReadAll(io.LimitReader(resp.Body, delivery.MaxExcerpt))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	}
	return out, classifyStatus(resp)
}

// ownHeaders are the headers request sets, in canonical form.
var ownHeaders = [...]string{"Content-Type", "User-Agent",
	http.CanonicalHeaderKey(webhook.HeaderID), http.CanonicalHeaderKey(webhook.HeaderTimestamp), http.CanonicalHeaderKey(webhook.HeaderSignature)}

// request builds the signed request for d's notification.
func (w *Webhook) request(ctx context.Context, d *delivery.Delivery, wh *configstore.WebhookDestination, now time.Time) (*http.Request, error) {
	n := d.Notification
	f, err := w.format(wh)
	if err != nil {
		return nil, delivery.PermanentError("config", err)
	}
	body, contentType, err := d.Render(f)
	if err != nil {
		return nil, delivery.PermanentError("payload", err)
	}
	target, err := withParameters(wh.URL, wh.Parameters, n)
	if err != nil {
		return nil, delivery.PermanentError("config", err)
	}
	secrets := wh.LiveSecrets(now)
	if len(secrets) == 0 {
		return nil, delivery.PermanentError("config", errors.New("the destination has no live signing secret"))
	}
	sig, err := webhook.Sign(secrets, n.ID, now, body)
	if err != nil {
		return nil, delivery.PermanentError("config", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, delivery.PermanentError("config", fmt.Errorf("build request: %w", err))
	}
	for k, v := range wh.Headers {
		req.Header.Set(k, v)
	}
	// Herald's own headers, under their canonical names, their values in
	// one array.
	values := [...]string{contentType, "Herald-Webhooks/1", n.ID, strconv.FormatInt(now.Unix(), 10), sig}
	for i, name := range ownHeaders {
		req.Header[name] = values[i : i+1 : i+1]
	}
	// The attempt's trace, for a receiver that traces too; nothing when
	// tracing is off.
	telemetry.Propagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, nil
}

func (w *Webhook) format(wh *configstore.WebhookDestination) (*notification.Format, error) {
	var body, ct string
	if wh.Template != nil {
		body, ct = wh.Template.Body, wh.Template.ContentType
	}
	r := w.formats.get(wh.Format+"\x00"+ct+"\x00"+body, func() formatResult {
		f, err := notification.NewFormat(wh.Format, body, ct)
		return formatResult{f, err}
	})
	return r.f, r.err
}

// withParameters adds the destination's parameters to the URL's query;
// each value is a template over the notification's native JSON form.
func withParameters(raw string, params []configstore.Parameter, n *notification.Notification) (string, error) {
	if len(params) == 0 {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	data := n.Data()
	for _, p := range params {
		t, err := notification.ParseTemplate(p.Name, p.Value)
		if err != nil {
			return "", fmt.Errorf("parameter %s: %w", p.Name, err)
		}
		var b strings.Builder
		if err := t.Execute(&b, data); err != nil {
			return "", fmt.Errorf("parameter %s: %w", p.Name, err)
		}
		q.Add(p.Name, b.String())
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// classifyError says what a failed round trip means.
func classifyError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrForbidden):
		return delivery.PermanentError("forbidden-address", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return delivery.RetryError("timeout", err)
	case errors.Is(err, context.Canceled):
		return err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return delivery.RetryError("connect", err)
	}
	return delivery.RetryError("network", err)
}

// classifyStatus says what a response status means: 2xx delivered; 410
// gone; 408, 429 and 5xx retried (429 and 503 after their Retry-After);
// 3xx retried (redirects are not followed); other 4xx permanent.
func classifyStatus(resp *http.Response) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("endpoint answered %d", code)
	switch {
	case code == http.StatusGone:
		return delivery.GoneError("status", err)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return delivery.RetryAfterError("status", d, err)
		}
		return delivery.RetryError("status", err)
	case code >= 300 && code < 400:
		return delivery.RetryError("redirect", fmt.Errorf("endpoint answered %d (redirects are not followed)", code))
	case code == http.StatusRequestTimeout || code >= 500:
		return delivery.RetryError("status", err)
	}
	return delivery.PermanentError("status", err)
}

// retryAfter reads a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
