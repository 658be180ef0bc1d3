package webhooksender

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
)

// errForbiddenAddress is returned when a webhook resolves to an address
// Herald must not call.
var errForbiddenAddress = errors.New("address not allowed for webhooks")

// newHTTPClient returns the client webhooks are posted with. It follows no
// redirects and, unless allowPrivate, refuses at connect time, after DNS
// resolution, every address that is not publicly routable.
func newHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !publicAddr(ap.Addr()) {
				return fmt.Errorf("%w: %s", errForbiddenAddress, address)
			}
			return nil
		}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = dialer.DialContext
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 16
	return &http.Client{
		Timeout:   timeout,
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// publicAddr reports whether a is publicly routable.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast()
}

// maxResponse bounds how much of a response is read.
const maxResponse = 4 << 10

// post sends one delivery attempt.
func post(ctx context.Context, cl *http.Client, wh *configstore.WebhookDestination, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return &permanentError{fmt.Errorf("build request: %w", err)}
	}
	for k, v := range wh.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhooks/1")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	resp, err := cl.Do(req)
	if err != nil {
		if errors.Is(err, errForbiddenAddress) {
			return &permanentError{err}
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return statusError(resp.StatusCode)
}
