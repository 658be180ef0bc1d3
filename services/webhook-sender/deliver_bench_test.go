package webhooksender

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/webhook"
)

// BenchmarkDeliver measures one webhook delivery of a rendered, signed
// notification to a receiver in this process that answers 204. bare is
// the baseline of the same run: the same body, signed the same way, posted
// by a plain net/http client, with nothing of the channel around it.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	sec, err := webhook.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	n := notification.Sample()
	b.Run("webhook", func(b *testing.B) {
		wh := devWebhook(b)
		dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: srv.URL + "/hook",
			Secrets: []configstore.SigningSecret{{Secret: sec}}}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := wh.Deliver(b.Context(), &delivery.Delivery{Notification: n, DestinationID: "d", Destination: dest, Attempt: 1}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare", func(b *testing.B) {
		body, err := n.JSON()
		if err != nil {
			b.Fatal(err)
		}
		cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		b.ReportAllocs()
		for b.Loop() {
			now := time.Now()
			sig, err := webhook.Sign([]string{sec}, n.ID, now, body)
			if err != nil {
				b.Fatal(err)
			}
			req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, srv.URL+"/hook", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(webhook.HeaderID, n.ID)
			req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
			req.Header.Set(webhook.HeaderSignature, sig)
			resp, err := cl.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
