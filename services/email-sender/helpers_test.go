package emailsender_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/peertest"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	"github.com/heraldhq/herald/services/email-sender/internal/smtptest"
)

const tenant = "t1"

// startSMTP runs the test SMTP server until the test ends.
func startSMTP(t *testing.T, c smtptest.Config) *smtptest.Server {
	t.Helper()
	s, err := smtptest.Start(peertest.Python(t), "testdata/smtpd.py", c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("SMTP server's stderr:\n%s", s.Stderr())
		}
	})
	return s
}

// tlsServer is the TLS configuration of a test SMTP server: a certificate
// for 127.0.0.1 from a CA made for the test, and the pool that trusts it.
func tlsServer(t *testing.T) (smtptest.Config, *x509.CertPool) {
	t.Helper()
	cert, key, roots, err := smtptest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return smtptest.Config{Cert: cert, Key: key}, roots
}

// newStore is a configuration view on an in-memory broker, followed until
// the test ends.
func newStore(t *testing.T) *configstore.Store {
	t.Helper()
	seeds, topic := kafkatest.Fake(t), "herald.config"
	kafkatest.Compacted(t, seeds, topic, 1)
	s, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(seeds...)}, topic, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := s.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// put stores a document of the test's tenant and returns it as stored.
func put(t *testing.T, s *configstore.Store, kind, id string, spec any) configstore.Document {
	t.Helper()
	return servicetest.Put(t, s, tenant, kind, id, spec)
}

// testOptions are the channel's options in tests: loopback allowed on any
// port, plaintext allowed, short timeouts.
func testOptions(t *testing.T) emailsender.Options {
	t.Helper()
	policy, err := egress.New(egress.Config{AllowLoopback: true, Ports: "any"})
	if err != nil {
		t.Fatal(err)
	}
	return emailsender.Options{Policy: policy, Timeout: 5 * time.Second, PoolSize: 2, IdleTimeout: time.Minute, AllowPlaintext: true}
}

// newEmail returns the channel over view, running until the test ends.
func newEmail(t *testing.T, view emailsender.ConfigView, o emailsender.Options) *emailsender.Email {
	t.Helper()
	e := emailsender.NewEmail(view, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		e.Close()
	})
	return e
}

// plainProfile is an SMTP profile for the test server without TLS.
func plainProfile(srv *smtptest.Server) configstore.SMTPProfile {
	return configstore.SMTPProfile{Name: "test", Host: "127.0.0.1", Port: srv.Port, FromName: "Billing", FromAddress: "billing@herald.example", TLS: configstore.TLSNone}
}

// plainSetup starts a test SMTP server with c and a configuration view
// holding a profile for it without TLS and the template "tpl".
func plainSetup(t *testing.T, c smtptest.Config) (*smtptest.Server, *configstore.Store) {
	t.Helper()
	srv := startSMTP(t, c)
	store := newStore(t)
	put(t, store, configstore.KindSMTPProfile, "main", plainProfile(srv))
	put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "s", TextBody: "b"})
	return srv, store
}

// newNote is a notification about an account, with fields given as JSON
// values.
func newNote(id, account string, fields map[string]string) *notification.Notification {
	n := &notification.Notification{
		ID: id, TenantID: tenant, RuleID: "rule", Name: "UnitAllowanceThreshold", State: "low",
		OrderingKey: account, Ordered: true, CreatedAt: time.UnixMilli(1700000000000).UTC(),
		Event:  notification.EventRef{ID: "ev-" + id, EntityType: "Balance", EntityID: "bal-1", Operation: "UPDATE", OccurredAt: time.UnixMilli(1700000000000).UTC()},
		Fields: fields,
	}
	if account != "" {
		n.Event.AccountID = &account
	}
	return n
}

// deliver makes one attempt to an email destination.
func deliver(e *emailsender.Email, destID string, dest configstore.EmailDestination, n *notification.Notification) (delivery.Response, error) {
	return e.Deliver(context.Background(), &delivery.Delivery{
		Notification: n, DestinationID: destID, Attempt: 1,
		Destination: configstore.Destination{Type: "email", Name: destID, Email: &dest},
	})
}

// attemptError returns the classified failure of an attempt, failing the
// test when there is none.
func attemptError(t *testing.T, err error) *delivery.AttemptError {
	t.Helper()
	var ae *delivery.AttemptError
	if !errors.As(err, &ae) {
		t.Fatalf("want a classified failure, got %v", err)
	}
	return ae
}

// wantFailure fails the test unless err is a failure of kind and class.
func wantFailure(t *testing.T, err error, kind delivery.Kind, class string) *delivery.AttemptError {
	t.Helper()
	ae := attemptError(t, err)
	if ae.Kind != kind || ae.Class != class {
		t.Errorf("got %s %q (%v), want %s %q", ae.Kind, ae.Class, err, kind, class)
	}
	return ae
}

// received is a message the server accepted, parsed.
type received struct {
	raw       []byte
	header    netmail.Header
	rawHeader string
	text      string
	html      string
	mediaType string
}

// parse parses a message as a mail client would.
func parse(t *testing.T, raw []byte) received {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, raw)
	}
	r := received{raw: raw, header: m.Header}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		r.rawHeader = string(raw[:i+2])
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	r.mediaType = mt
	part := func(ct, cte string, body io.Reader) {
		if strings.EqualFold(cte, "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(ct)
		switch pt {
		case "text/plain":
			r.text = string(b)
		case "text/html":
			r.html = string(b)
		default:
			t.Errorf("unexpected part %s", ct)
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(m.Body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			part(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)
		}
	} else {
		part(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body)
	}
	return r
}

// decoded returns a header's value with RFC 2047 words decoded.
func (r received) decoded(t *testing.T, name string) string {
	t.Helper()
	v, err := new(mime.WordDecoder).DecodeHeader(r.header.Get(name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// addresses returns an address header's addresses.
func (r received) addresses(t *testing.T, name string) []*netmail.Address {
	t.Helper()
	if r.header.Get(name) == "" {
		return nil
	}
	list, err := r.header.AddressList(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return list
}
