// Command email-bench measures the email channel's emails per second with
// pooled SMTP sessions next to one new connection per email (connect,
// EHLO, STARTTLS, TLS handshake, EHLO, AUTH, the transaction, QUIT),
// against the same local server in the same run, and prints the ratio.
//
// It runs against two servers, each requiring STARTTLS with a certificate
// from a CA made for the run, and AUTH PLAIN: aiosmtpd (the tests' peer,
// under the test peers' Python from `make peers`), whose single Python
// thread is busy most of the run and so bounds both rates, and a Go
// server (emersion/go-smtp) in this process, which leaves the client's
// own costs to show. The two modes alternate in rounds, so that a change
// in the machine's load falls on both. The configuration view runs on an
// embedded broker (kfake).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/notification"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	"github.com/heraldhq/herald/services/email-sender/internal/smtptest"
)

func main() {
	python := flag.String("python", ".cache/venv/bin/python", "the test peers' Python, with aiosmtpd")
	script := flag.String("script", "services/email-sender/testdata/smtpd.py", "the aiosmtpd test server's script")
	servers := flag.String("servers", "aiosmtpd,go", "the servers to measure against: aiosmtpd, go or both")
	n := flag.Int("n", 1500, "emails per mode and server")
	rounds := flag.Int("rounds", 3, "rounds the emails of each mode are split into, the modes alternating")
	workers := flag.Int("c", 4, "emails in flight, and sessions in the pool")
	flag.Parse()
	if err := run(*python, *script, strings.Split(*servers, ","), *n, *rounds, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "email-bench:", err)
		os.Exit(1)
	}
}

const tenant = "bench"

var login = smtptest.Login{User: "bench", Password: "bench-password"}

// server is an SMTP server under measure.
type server interface {
	port() int
	// counts returns the connections and messages so far.
	counts() (conns, msgs int)
	// cpu is the server's CPU time so far, when it runs in a process of
	// its own.
	cpu() (time.Duration, bool)
	close()
}

func run(python, script string, servers []string, n, rounds, workers int) error {
	dir, err := os.MkdirTemp("", "email-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cert, key, roots, err := smtptest.NewCA(dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := configView(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	policy, err := egress.New(egress.Config{AllowLoopback: true, Ports: "any"})
	if err != nil {
		return err
	}
	opts := emailsender.Options{Policy: policy, Timeout: 30 * time.Second, PoolSize: workers, IdleTimeout: time.Minute, RootCAs: roots}
	fmt.Printf("%d emails per mode and server, %d in flight, %d rounds; STARTTLS and AUTH PLAIN on 127.0.0.1\n", n, workers, rounds)
	for _, name := range servers {
		var srv server
		switch name {
		case "aiosmtpd":
			srv, err = startAiosmtpd(python, script, cert, key)
		case "go":
			srv, err = startGo(cert, key)
		default:
			err = fmt.Errorf("-servers: %q is neither aiosmtpd nor go", name)
		}
		if err != nil {
			return err
		}
		err = compare(ctx, store, opts, srv, name, n, rounds, workers)
		srv.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// compare measures both modes against srv and prints the figures.
func compare(ctx context.Context, store *configstore.Store, opts emailsender.Options, srv server, name string, n, rounds, workers int) error {
	doc, err := configstore.NewDocument(tenant, configstore.KindSMTPProfile, "main", configstore.SMTPProfile{Name: "bench", Host: "127.0.0.1", Port: srv.port(),
		FromName: "Billing", FromAddress: "billing@herald.example", Username: login.User, Password: login.Password, TLS: configstore.TLSStartTLS})
	if err == nil {
		_, err = store.Put(ctx, doc, 0)
	}
	if err != nil {
		return err
	}
	fresh := opts
	fresh.SessionMessages = 1
	var modes [2]figures
	for r := range rounds {
		count := n / rounds
		if r == rounds-1 {
			count = n - count*(rounds-1)
		}
		for i, o := range []emailsender.Options{fresh, opts} {
			f, err := measure(store, o, srv, count, workers, fmt.Sprintf("%s-%d-%d", name, r, i))
			if err != nil {
				return err
			}
			modes[i].add(f)
		}
	}
	fmt.Printf("%s:\n", name)
	for i, label := range []string{"one new connection per email", "pooled sessions"} {
		m := modes[i]
		line := fmt.Sprintf("  %-29s %6.0f emails/s  (%d emails, %d connections", label+":", float64(m.emails)/m.elapsed.Seconds(), m.emails, m.conns)
		if m.serverCPU > 0 {
			line += fmt.Sprintf(", server busy %.0f%% of a core", 100*m.serverCPU.Seconds()/m.elapsed.Seconds())
		}
		fmt.Println(line + ")")
	}
	fmt.Printf("  ratio: %.1f\n", modes[0].elapsed.Seconds()/modes[1].elapsed.Seconds())
	return nil
}

// figures are what a run of one mode measured.
type figures struct {
	emails, conns int
	elapsed       time.Duration
	serverCPU     time.Duration
}

func (f *figures) add(g figures) {
	f.emails += g.emails
	f.conns += g.conns
	f.elapsed += g.elapsed
	f.serverCPU += g.serverCPU
}

// measure sends n emails from workers goroutines through a channel with
// opts, and returns the time it took and the connections the server
// counted.
func measure(view emailsender.ConfigView, opts emailsender.Options, srv server, n, workers int, run string) (figures, error) {
	e := emailsender.NewEmail(view, opts)
	defer e.Close()
	dest := configstore.Destination{Type: emailsender.Channel, Name: "bench", Email: &configstore.EmailDestination{TemplateID: "tpl", To: []string{"ops@herald.example"}}}
	conns0, msgs0 := srv.counts()
	cpu0, _ := srv.cpu()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				acct := fmt.Sprintf("acct-%d", i)
				note := &notification.Notification{
					ID: fmt.Sprintf("%s-%d", run, i), TenantID: tenant, RuleID: "rule", Name: "UnitAllowanceThreshold", State: "low",
					OrderingKey: acct, Ordered: true, CreatedAt: time.Now(),
					Event: notification.EventRef{ID: fmt.Sprint(i), EntityType: "Balance", EntityID: "bal", Operation: "UPDATE", OccurredAt: time.Now(), AccountID: &acct},
				}
				if _, err := e.Deliver(context.Background(), &delivery.Delivery{Notification: note, DestinationID: "bench", Destination: dest, Attempt: 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		return figures{}, err
	}
	cpu1, _ := srv.cpu()
	conns1, msgs1 := srv.counts()
	if msgs1-msgs0 != n {
		return figures{}, fmt.Errorf("the server accepted %d messages of %d", msgs1-msgs0, n)
	}
	return figures{emails: n, conns: conns1 - conns0, elapsed: elapsed, serverCPU: cpu1 - cpu0}, nil
}

// configView is a configuration view on an embedded broker, holding the
// template.
func configView(ctx context.Context) (*configstore.Store, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, err
	}
	go func() { <-ctx.Done(); cluster.Close() }()
	seeds := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	compact := "compact"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": &compact}, "config"); err != nil {
		return nil, err
	}
	store, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(seeds...)}, "config", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, err
	}
	go store.Run(ctx)
	if err := store.WaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	doc, err := configstore.NewDocument(tenant, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{
		Subject:  "{{.Notification.Name}} for {{.Notification.Event.AccountID}}",
		TextBody: "Account {{.Notification.Event.AccountID}} is {{.Notification.State}}.",
		HTMLBody: "<p>Account <b>{{.Notification.Event.AccountID}}</b> is {{.Notification.State}}.</p>",
	})
	if err == nil {
		_, err = store.Put(ctx, doc, 0)
	}
	return store, err
}

// aiosmtpd is the tests' server, in a Python process.
type aiosmtpd struct{ *smtptest.Server }

func startAiosmtpd(python, script, cert, key string) (server, error) {
	s, err := smtptest.Start(python, script, smtptest.Config{Cert: cert, Key: key, StartTLS: true, RequireStartTLS: true, Auth: &login})
	if err != nil {
		return nil, err
	}
	return aiosmtpd{s}, nil
}

func (a aiosmtpd) port() int { return a.Port }
func (a aiosmtpd) close()    { a.Close() }

func (a aiosmtpd) counts() (int, int) { return a.Count("connect"), a.Count("message") }

// cpu reads the process's CPU time from /proc: utime and stime, the 12th
// and 13th fields after the command's closing parenthesis, in clock ticks
// of 10 ms.
func (a aiosmtpd) cpu() (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.PID()))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * 10 * time.Millisecond, true
}

// goServer is an SMTP server in this process (emersion/go-smtp) that
// accepts the bench's login and discards each message.
type goServer struct {
	srv          *smtp.Server
	conns, msgs  atomic.Int64
	listenerPort int
}

func startGo(certFile, keyFile string) (server, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	g := &goServer{}
	g.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &goSession{msgs: &g.msgs}, nil
	}))
	g.srv.Domain = "smtp.bench"
	g.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	g.srv.ReadTimeout, g.srv.WriteTimeout = 30*time.Second, 30*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g.listenerPort = ln.Addr().(*net.TCPAddr).Port
	// Counted at accept: the server starts a session again after STARTTLS.
	go func() { _ = g.srv.Serve(countingListener{ln, &g.conns}) }()
	return g, nil
}

func (g *goServer) port() int                  { return g.listenerPort }
func (g *goServer) counts() (int, int)         { return int(g.conns.Load()), int(g.msgs.Load()) }
func (g *goServer) cpu() (time.Duration, bool) { return 0, false }
func (g *goServer) close()                     { _ = g.srv.Close() }

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// goSession is one connection to goServer.
type goSession struct {
	msgs   *atomic.Int64
	authed bool
}

func (s *goSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *goSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != login.User || pass != login.Password {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *goSession) Mail(string, *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *goSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (s *goSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.msgs.Add(1)
	return nil
}

func (s *goSession) Reset()        {}
func (s *goSession) Logout() error { return nil }
