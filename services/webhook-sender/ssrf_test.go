package webhooksender_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/notification"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

// loopbackReceiver is a TCP listener on 127.0.0.1 that counts the
// connections it accepts.
func loopbackReceiver(t *testing.T) (port int, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

// tlsServer serves h over HTTPS on ip with a certificate for ip, and
// returns its URL and a pool that trusts it.
func tlsServer(t *testing.T, ip string, h http.Handler) (string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, pool
}

// productionWebhook is the webhook channel as production configures it
// (https only, no loopback), except that any port is allowed, so that the
// address check, not the port check, is what refuses the test receiver.
// allow exempts networks, as an operator may.
func productionWebhook(t *testing.T, pool *x509.CertPool, allow ...string) *webhooksender.Webhook {
	t.Helper()
	p, err := egress.New(egress.Config{Ports: "any", AllowNetworks: allow})
	if err != nil {
		t.Fatal(err)
	}
	return webhooksender.NewWebhook(p, 4, 2*time.Second, pool)
}

func deliverTo(t *testing.T, wh *webhooksender.Webhook, url string) (delivery.Response, error) {
	t.Helper()
	dest := configstore.Destination{Type: "webhook", Webhook: &configstore.WebhookDestination{URL: url,
		Secrets: []configstore.SigningSecret{{Secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="}}}}
	return wh.Deliver(t.Context(), &delivery.Delivery{Notification: notification.Sample(), DestinationID: "d", Destination: dest, Attempt: 1})
}

// TestLoopbackReceiverNeverReached sends, from a production-configured
// sender, to a receiver on loopback by address, by the name localhost,
// by the IPv4-mapped and unspecified forms, and through a redirect from
// an allowed server: the receiver accepts no connection, and each attempt
// is refused as a forbidden address or a redirect.
func TestLoopbackReceiverNeverReached(t *testing.T) {
	port, accepted := loopbackReceiver(t)
	p := strconv.Itoa(port)
	var redirected atomic.Int32
	redirector, pool := tlsServer(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		http.Redirect(w, r, "https://localhost:"+p+"/hook", http.StatusTemporaryRedirect)
	}))
	wh := productionWebhook(t, pool, "127.0.0.2/32")

	for _, url := range []string{
		"https://127.0.0.1:" + p + "/hook",
		"https://localhost:" + p + "/hook",
		"https://[::ffff:127.0.0.1]:" + p + "/hook",
		"https://0.0.0.0:" + p + "/hook",
		"https://[::]:" + p + "/hook",
	} {
		_, err := deliverTo(t, wh, url)
		var ae *delivery.AttemptError
		if !errors.As(err, &ae) || ae.Kind != delivery.Permanent || ae.Class != "forbidden-address" {
			t.Errorf("%s: err = %v, want a permanent forbidden-address failure", url, err)
		}
	}
	resp, err := deliverTo(t, wh, redirector+"/hook")
	var ae *delivery.AttemptError
	if !errors.As(err, &ae) || ae.Kind != delivery.Retry || ae.Class != "redirect" || resp.StatusCode != http.StatusTemporaryRedirect {
		t.Errorf("redirect: %d %v, want a failed attempt of class redirect", resp.StatusCode, err)
	}
	if redirected.Load() != 1 {
		t.Errorf("the redirecting server got %d requests, want 1", redirected.Load())
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the loopback receiver accepted %d connections, want none", n)
	}
}

// TestPlainHTTPAndPortsRefusedInProduction shows the production defaults
// refuse http:// and ports outside the allowed set before any connection.
func TestPlainHTTPAndPortsRefusedInProduction(t *testing.T) {
	port, accepted := loopbackReceiver(t)
	p, err := egress.New(egress.Config{Ports: "443,8443", AllowNetworks: []string{"127.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	wh := webhooksender.NewWebhook(p, 1, time.Second, nil)
	for _, url := range []string{"http://127.0.0.1:" + strconv.Itoa(port) + "/", "https://127.0.0.1:" + strconv.Itoa(port) + "/"} {
		_, err := deliverTo(t, wh, url)
		var ae *delivery.AttemptError
		if !errors.As(err, &ae) || ae.Kind != delivery.Permanent {
			t.Errorf("%s: err = %v, want a permanent failure", url, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the receiver accepted %d connections", n)
	}
}
