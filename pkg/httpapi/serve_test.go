package httpapi_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/httpapi"
)

// serve runs Serve on a loopback listener with h and returns its address,
// the function that stops it, and where its result arrives.
func serve(t *testing.T, h http.Handler, drain time.Duration) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- httpapi.Serve(ctx, ln, h, drain, slog.New(slog.DiscardHandler)) }()
	return ln.Addr().String(), cancel, done
}

func TestServeStopsPastAConnectionThatNeverSentARequest(t *testing.T) {
	addr, stop, done := serve(t, http.NotFoundHandler(), 100*time.Millisecond)
	// A client that dialled and then gave up on its request leaves a
	// connection open with nothing on it.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server accepts in order: once a later connection is answered, it
	// holds this one too.
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil: no request was in flight", err)
	}
}

func TestServeReportsARequestCutByTheDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	})
	addr, stop, done := serve(t, h, 100*time.Millisecond)
	defer close(release)
	go func() {
		if resp, err := http.Get("http://" + addr + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	stop()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "1 requests in flight") {
		t.Fatalf("Serve = %v, want an error naming the request in flight", err)
	}
}
