package emailsender_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/services/email-sender/internal/smtptest"
)

// TestTLSAndAUTH sends through servers that take STARTTLS (required
// before any mail) or TLS from the first byte, with the test CA and AUTH
// PLAIN or LOGIN offered only over TLS, from a sender that does not allow
// plaintext: each message arrives over TLS, after the credentials were
// accepted over TLS.
func TestTLSAndAUTH(t *testing.T) {
	login := &smtptest.Login{User: "mailer", Password: "s3cret pass"}
	for _, c := range []struct {
		name, mode string
		srv        func(smtptest.Config) smtptest.Config
		mechanism  string
	}{
		{"STARTTLS with PLAIN", configstore.TLSStartTLS, func(c smtptest.Config) smtptest.Config {
			c.StartTLS, c.RequireStartTLS = true, true
			return c
		}, "PLAIN"},
		{"STARTTLS with LOGIN", configstore.TLSStartTLS, func(c smtptest.Config) smtptest.Config {
			c.StartTLS, c.RequireStartTLS, c.AuthExclude = true, true, []string{"PLAIN"}
			return c
		}, "LOGIN"},
		{"implicit TLS", configstore.TLSImplicit, func(c smtptest.Config) smtptest.Config {
			c.Implicit = true
			return c
		}, "PLAIN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, roots := tlsServer(t)
			base.Auth = login
			srv := startSMTP(t, c.srv(base))
			store := newStore(t)
			profile := plainProfile(srv)
			profile.TLS, profile.Username, profile.Password = c.mode, login.User, login.Password
			put(t, store, configstore.KindSMTPProfile, "main", profile)
			put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "s", TextBody: "b"})
			o := testOptions(t)
			o.AllowPlaintext, o.RootCAs = false, roots
			e := newEmail(t, store, o)
			if _, err := deliver(e, "d", configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}, newNote("n1", "acct-1", nil)); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if err := srv.Wait("message", 1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if m := srv.Events("message")[0]; !m.TLS || m.Login != login.User {
				t.Errorf("message over TLS %v as %q, want over TLS as %q", m.TLS, m.Login, login.User)
			}
			auths := srv.Events("auth")
			if len(auths) != 1 || !auths[0].TLS || !auths[0].Success || auths[0].Mechanism != c.mechanism {
				t.Errorf("AUTH attempts %+v, want one %s over TLS, accepted", auths, c.mechanism)
			}
		})
	}
}

// TestRequiredTLSIsNeverSkipped: a starttls profile meets a server that
// does not offer STARTTLS (but offers AUTH in the clear), or one whose
// certificate it does not trust; a tls none profile meets a sender that
// does not allow plaintext. None of the servers sees credentials or a
// message, and the attempt fails as the engine expects.
func TestRequiredTLSIsNeverSkipped(t *testing.T) {
	login := &smtptest.Login{User: "mailer", Password: "s3cret"}
	untrusted, _ := tlsServer(t)
	untrusted.StartTLS, untrusted.Auth = true, login
	for _, c := range []struct {
		name  string
		srv   smtptest.Config
		mode  string
		kind  delivery.Kind
		class string
		dials int
	}{
		{"STARTTLS not offered", smtptest.Config{Auth: login, AuthPlaintext: true}, configstore.TLSStartTLS, delivery.Retry, "tls", 1},
		{"certificate not trusted", untrusted, configstore.TLSStartTLS, delivery.Retry, "tls", 1},
		{"plaintext not allowed", smtptest.Config{Auth: login, AuthPlaintext: true}, configstore.TLSNone, delivery.Permanent, "plaintext-refused", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startSMTP(t, c.srv)
			store := newStore(t)
			profile := plainProfile(srv)
			profile.TLS, profile.Username, profile.Password = c.mode, login.User, login.Password
			put(t, store, configstore.KindSMTPProfile, "main", profile)
			put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "s", TextBody: "b"})
			o := testOptions(t)
			o.AllowPlaintext = false
			e := newEmail(t, store, o)
			_, err := deliver(e, "d", configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}, newNote("n1", "acct-1", nil))
			wantFailure(t, err, c.kind, c.class)
			if n := srv.Count("connect"); n != c.dials {
				t.Errorf("%d connections, want %d", n, c.dials)
			}
			for _, kind := range []string{"auth", "mail", "rcpt", "message"} {
				if n := srv.Count(kind); n != 0 {
					t.Errorf("the server saw %d %s", n, kind)
				}
			}
		})
	}
}

// TestSMTPRepliesAreClassified answers MAIL, RCPT or DATA with 421, 451
// or 550, drops the connection at RCPT or after the message's content, or
// answers too late: 4xx, 421, timeouts and dropped connections are
// retried, 5xx is permanent, and the response carries the reply's code.
// Failures to connect are retried unless the egress policy forbids the
// address.
func TestSMTPRepliesAreClassified(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{})
	dest := configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}
	for i, c := range []struct {
		rule  smtptest.Rule
		kind  delivery.Kind
		class string
		code  int
	}{
		{smtptest.Rule{Cmd: "MAIL", Reply: "421 4.3.2 Shutting down"}, delivery.Retry, "smtp-421", 421},
		{smtptest.Rule{Cmd: "MAIL", Reply: "550 5.7.1 Sender refused"}, delivery.Permanent, "smtp-5xx", 550},
		{smtptest.Rule{Cmd: "RCPT", Reply: "421 4.3.2 Shutting down"}, delivery.Retry, "smtp-421", 421},
		{smtptest.Rule{Cmd: "RCPT", Reply: "451 4.3.0 Try again later"}, delivery.Retry, "smtp-4xx", 451},
		{smtptest.Rule{Cmd: "RCPT", Reply: "550 5.1.1 No such user"}, delivery.Permanent, "smtp-5xx", 550},
		{smtptest.Rule{Cmd: "DATA", Reply: "421 4.3.2 Shutting down"}, delivery.Retry, "smtp-421", 421},
		{smtptest.Rule{Cmd: "DATA", Reply: "451 4.3.0 Try again later"}, delivery.Retry, "smtp-4xx", 451},
		{smtptest.Rule{Cmd: "DATA", Reply: "550 5.7.1 Message refused"}, delivery.Permanent, "smtp-5xx", 550},
		{smtptest.Rule{Cmd: "RCPT", Drop: true}, delivery.Retry, "network", 0},
		{smtptest.Rule{Cmd: "DATA", Drop: true}, delivery.Retry, "network", 0},
		{smtptest.Rule{Cmd: "RCPT", Reply: "250 OK", Delay: 2}, delivery.Retry, "timeout", 0},
	} {
		name := fmt.Sprintf("%s %s", c.rule.Cmd, c.rule.Reply)
		if c.rule.Drop {
			name = c.rule.Cmd + " dropped"
		} else if c.rule.Delay > 0 {
			name = c.rule.Cmd + " late"
		}
		t.Run(name, func(t *testing.T) {
			if err := srv.SetRules([]smtptest.Rule{c.rule}); err != nil {
				t.Fatal(err)
			}
			o := testOptions(t)
			o.Timeout = 500 * time.Millisecond
			e := newEmail(t, store, o)
			before := srv.Count("message")
			resp, err := deliver(e, "d", dest, newNote(fmt.Sprintf("n%d", i), "acct-1", nil))
			wantFailure(t, err, c.kind, c.class)
			if resp.StatusCode != c.code {
				t.Errorf("response code %d, want %d", resp.StatusCode, c.code)
			}
			if n := srv.Count("message") - before; n != 0 {
				t.Errorf("%d messages accepted", n)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		store := newStore(t)
		profile := plainProfile(srv)
		profile.Port = port
		put(t, store, configstore.KindSMTPProfile, "main", profile)
		put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "s", TextBody: "b"})
		_, err = deliver(newEmail(t, store, testOptions(t)), "d", dest, newNote("refused", "acct-1", nil))
		wantFailure(t, err, delivery.Retry, "connect")
	})
	t.Run("forbidden address", func(t *testing.T) {
		if err := srv.SetRules(nil); err != nil {
			t.Fatal(err)
		}
		before := srv.Count("connect")
		o := testOptions(t)
		var err error
		if o.Policy, err = egress.New(egress.Config{Ports: "any"}); err != nil {
			t.Fatal(err)
		}
		_, err = deliver(newEmail(t, store, o), "d", dest, newNote("forbidden", "acct-1", nil))
		wantFailure(t, err, delivery.Permanent, "forbidden-address")
		if n := srv.Count("connect") - before; n != 0 {
			t.Errorf("%d connections to a loopback server the policy forbids", n)
		}
	})
	t.Run("port not allowed", func(t *testing.T) {
		o := testOptions(t)
		var err error
		if o.Policy, err = egress.New(egress.Config{AllowLoopback: true, Ports: "25,587"}); err != nil {
			t.Fatal(err)
		}
		_, err = deliver(newEmail(t, store, o), "d", dest, newNote("port", "acct-1", nil))
		wantFailure(t, err, delivery.Permanent, "forbidden-address")
	})
}

// TestSessionsArePooled sends messages one after another, then from
// several goroutines at once: they share as many sessions as the pool
// allows, and the server counts that many connections.
func TestSessionsArePooled(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{})
	dest := configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}
	o := testOptions(t)
	o.PoolSize = 3
	e := newEmail(t, store, o)

	const serial, parallel, workers = 50, 120, 8
	for i := range serial {
		if _, err := deliver(e, "d", dest, newNote("s"+strconv.Itoa(i), "acct-1", nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Count("connect"); n != 1 {
		t.Errorf("%d messages one after another took %d connections, want 1", serial, n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < parallel; i += workers {
				if _, err := deliver(e, "d", dest, newNote("p"+strconv.Itoa(i), "acct-1", nil)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := srv.Wait("message", serial+parallel, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count("connect"); n > o.PoolSize {
		t.Errorf("%d messages from %d goroutines took %d connections, want at most the pool's %d", parallel, workers, n, o.PoolSize)
	}
	t.Logf("%d messages over %d connections", serial+parallel, srv.Count("connect"))
}

// TestSessionsAreReplaced: a pooled session that the server dropped, that
// it closed with 421, or that it answers with 421 at MAIL, is replaced by
// a new one and the message still goes out in the same attempt; an
// edited profile gets a session of its own; a session idle for longer
// than IdleTimeout is closed; SessionMessages caps a session's messages.
func TestSessionsAreReplaced(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{})
	dest := configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}
	o := testOptions(t)
	o.PoolSize, o.IdleTimeout, o.SessionMessages = 1, 2*time.Second, 5
	e := newEmail(t, store, o)
	seq := 0
	send := func(t *testing.T) {
		t.Helper()
		seq++
		if _, err := deliver(e, "d", dest, newNote("n"+strconv.Itoa(seq), "acct-1", nil)); err != nil {
			t.Fatalf("deliver: %v", err)
		}
		if err := srv.Wait("message", seq, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	wantConnections := func(t *testing.T, want int) {
		t.Helper()
		if n := srv.Count("connect"); n != want {
			t.Errorf("%d connections, want %d", n, want)
		}
	}
	send(t)
	wantConnections(t, 1)
	for _, how := range []string{"abort", "421"} {
		if n, err := srv.Kick(how); err != nil || n != 1 {
			t.Fatalf("kick: %d, %v", n, err)
		}
		send(t)
	}
	wantConnections(t, 3)
	if err := srv.SetRules([]smtptest.Rule{{Cmd: "MAIL", Reply: "421 4.7.0 Too many messages on this connection", Times: 1}}); err != nil {
		t.Fatal(err)
	}
	send(t)
	wantConnections(t, 4)

	put(t, store, configstore.KindSMTPProfile, "main", plainProfile(srv))
	send(t)
	wantConnections(t, 5)
	// The edited profile's session carries up to SessionMessages.
	for range o.SessionMessages {
		send(t)
	}
	wantConnections(t, 6)

	// The sessions left in the pools, the old profile's and the last,
	// end once idle for IdleTimeout.
	if err := srv.Wait("disconnect", 6, o.IdleTimeout+5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestCancelEndsATransaction: when the engine ends an attempt's context
// (a shutdown), a transaction waiting on a slow server ends at once with
// the context's error, not when the command's timeout passes.
func TestCancelEndsATransaction(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{Rules: []smtptest.Rule{{Cmd: "DATA", Reply: "250 OK", Delay: 20}}})
	o := testOptions(t)
	o.Timeout = time.Minute
	e := newEmail(t, store, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.Deliver(ctx, &delivery.Delivery{Notification: newNote("n1", "acct-1", nil), DestinationID: "d", Attempt: 1,
			Destination: configstore.Destination{Type: "email", Email: &configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}}})
		done <- err
	}()
	if err := srv.Wait("rcpt", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("attempt ended with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the attempt went on for 5s after its context ended")
	}
}
