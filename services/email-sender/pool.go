package emailsender

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
)

// poolKey names the sessions that may carry a profile's email: an edited
// profile (a new version) gets sessions of its own.
type poolKey struct {
	tenant, profile string
	version         int64
	host            string
	port            int
	user, tls       string
}

// pool holds the open SMTP sessions of one profile: up to size in use or
// idle, reused for one message after another with RSET between them.
type pool struct {
	key      poolKey
	addr     string
	password string
	tlsConf  *tls.Config
	opts     *Options
	helo     string
	slots    chan struct{} // one per session in use

	mu       sync.Mutex
	idle     []*session // most recently used last
	lastUsed time.Time
	closed   bool
}

// session is one SMTP connection, set up (EHLO, TLS, AUTH) and between
// transactions.
type session struct {
	c      *smtp.Client
	conn   net.Conn // the TCP connection under c
	sent   int
	idleAt time.Time
	reused bool
}

// pool returns the session pool of a profile document, refusing a profile
// that cannot be used.
func (e *Email) pool(doc configstore.Document) (*pool, error) {
	p := configstore.Spec[configstore.SMTPProfile](doc)
	switch p.TLS {
	case configstore.TLSStartTLS, configstore.TLSImplicit:
	case configstore.TLSNone:
		if !e.opts.AllowPlaintext {
			return nil, delivery.PermanentError("plaintext-refused",
				fmt.Errorf("SMTP profile %s uses tls none: plain SMTP is refused unless HERALD_EMAIL_ALLOW_PLAINTEXT is set", doc.ID))
		}
	default:
		return nil, delivery.PermanentError("config", fmt.Errorf("SMTP profile %s: tls %q is not none, starttls or tls", doc.ID, p.TLS))
	}
	if p.Host == "" || strings.ContainsAny(p.Host, "\r\n\x00 ") {
		return nil, delivery.PermanentError("config", fmt.Errorf("SMTP profile %s: host %q is not a host name", doc.ID, p.Host))
	}
	port := p.Port
	if port == 0 {
		port = 25
		if p.TLS == configstore.TLSImplicit {
			port = 465
		}
	}
	key := poolKey{tenant: doc.Tenant, profile: doc.ID, version: doc.Version, host: p.Host, port: port, user: p.Username, tls: p.TLS}
	e.mu.Lock()
	defer e.mu.Unlock()
	if pl, ok := e.pools[key]; ok {
		return pl, nil
	}
	pl := &pool{
		key: key, addr: net.JoinHostPort(p.Host, strconv.Itoa(port)), password: p.Password,
		tlsConf: &tls.Config{ServerName: p.Host, MinVersion: tls.VersionTLS12, RootCAs: e.opts.RootCAs},
		opts:    &e.opts, helo: e.helo, slots: make(chan struct{}, e.opts.PoolSize),
	}
	e.pools[key] = pl
	return pl, nil
}

// result is what a transaction came to.
type result struct {
	code      int    // of the final reply to DATA
	reply     string // its text
	refused   []refusal
	committed bool // the message's final dot was sent
}

// refusal is a recipient the server refused.
type refusal struct {
	addr string
	err  *textproto.Error
}

// send sends out over a session of the pool. A reused session that turns
// out closed, or that the server closes (421), before the message was
// committed, is replaced by a new one once.
func (p *pool) send(ctx context.Context, out *outgoing) (result, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	defer func() { <-p.slots }()
	for again := true; ; again = false {
		s, err := p.session(ctx)
		if err != nil {
			return result{}, err
		}
		// Ending ctx (the engine shutting down) ends the transaction at
		// once rather than when its command's deadline passes.
		stop := context.AfterFunc(ctx, func() { _ = s.conn.Close() })
		res, err := p.transact(s, out)
		if !stop() {
			if err == nil {
				return res, nil
			}
			return res, ctx.Err()
		}
		if err == nil || !broken(err) {
			p.put(s)
			return res, err
		}
		s.close()
		if !s.reused || res.committed || !again {
			return res, err
		}
	}
}

// broken reports whether a session is unusable after err: anything but an
// SMTP reply, or a reply that closes the connection (421).
func broken(err error) bool {
	var te *textproto.Error
	return !errors.As(err, &te) || te.Code == 421
}

// session returns an idle session that answers RSET, or a new one.
func (p *pool) session(ctx context.Context) (*session, error) {
	for {
		p.mu.Lock()
		p.lastUsed = time.Now()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			break
		}
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		if time.Since(s.idleAt) > p.opts.IdleTimeout {
			s.quit(p.opts.Timeout)
			continue
		}
		if err := s.c.UpdateDeadline(p.opts.Timeout); err == nil {
			if err = s.c.Reset(); err == nil {
				s.reused = true
				return s, nil
			}
		}
		s.close()
	}
	return p.dial(ctx)
}

// put returns a session after a transaction, to be reused unless it has
// carried its share of messages or the pool is closed.
func (p *pool) put(s *session) {
	p.mu.Lock()
	if p.closed || p.opts.SessionMessages > 0 && s.sent >= p.opts.SessionMessages {
		p.mu.Unlock()
		s.quit(p.opts.Timeout)
		return
	}
	s.idleAt = time.Now()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
}

// setupError is a failure while a session is set up; class names the step
// for the attempt log.
type setupError struct {
	class     string
	permanent bool
	err       error
}

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// dial opens a session: the connection through the egress policy (TLS
// from the first byte for tls), the greeting, EHLO, STARTTLS (required
// for starttls: a server that does not offer it gets no message and no
// credentials), and AUTH when the profile has a username, only over TLS
// unless plaintext is allowed.
func (p *pool) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	d := p.opts.Policy.Dialer(net.Dialer{})
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, &setupError{class: "connect", err: err}
	}
	if err := conn.SetDeadline(time.Now().Add(p.opts.Timeout)); err != nil {
		conn.Close()
		return nil, err
	}
	var text net.Conn = conn
	if p.key.tls == configstore.TLSImplicit {
		tc := tls.Client(conn, p.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, &setupError{class: "tls", err: err}
		}
		text = tc
	}
	c, err := smtp.NewClient(text, p.key.host)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := p.setup(c); err != nil {
		conn.Close()
		return nil, err
	}
	return &session{c: c, conn: conn}, nil
}

// setup says hello, starts TLS and authenticates.
func (p *pool) setup(c *smtp.Client) error {
	if err := c.Hello(p.helo); err != nil {
		return err
	}
	if p.key.tls == configstore.TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return &setupError{class: "tls", err: fmt.Errorf("%s does not offer STARTTLS, which the profile requires", p.addr)}
		}
		if err := c.StartTLS(p.tlsConf); err != nil {
			return &setupError{class: "tls", err: fmt.Errorf("STARTTLS: %w", err)}
		}
	}
	if p.key.user == "" {
		return nil
	}
	state, err := c.GetTLSConnectionState()
	if (err != nil || !state.HandshakeComplete) && !p.opts.AllowPlaintext {
		return &setupError{class: "auth", permanent: true, err: errors.New("credentials are sent only over TLS")}
	}
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return &setupError{class: "auth", permanent: true, err: fmt.Errorf("%s offers no AUTH", p.addr)}
	}
	var a smtp.Auth
	switch offered := strings.Fields(strings.ToUpper(mechs)); {
	case slices.Contains(offered, "PLAIN"):
		a = smtp.PlainAuth("", p.key.user, p.password, p.key.host, p.opts.AllowPlaintext)
	case slices.Contains(offered, "LOGIN"):
		a = smtp.LoginAuth(p.key.user, p.password, p.key.host, p.opts.AllowPlaintext)
	default:
		return &setupError{class: "auth", permanent: true, err: fmt.Errorf("%s offers AUTH %s, neither PLAIN nor LOGIN", p.addr, mechs)}
	}
	if err := c.Auth(a); err != nil {
		return &setupError{class: "auth", err: fmt.Errorf("AUTH: %w", err)}
	}
	return nil
}

// transact sends one message over s: MAIL, a RCPT per recipient, DATA. A
// recipient the server refuses is noted and the message goes to the
// others; when it refuses them all, the error carries the first
// temporary refusal's code (so the attempt is retried) or else the first
// permanent one's.
func (p *pool) transact(s *session, out *outgoing) (res result, err error) {
	c, timeout := s.c, p.opts.Timeout
	if err := c.UpdateDeadline(timeout); err != nil {
		return res, err
	}
	if err := c.Mail(out.from); err != nil {
		return res, err
	}
	accepted := 0
	for _, rcpt := range out.rcpts {
		if err := c.UpdateDeadline(timeout); err != nil {
			return res, err
		}
		err := c.Rcpt(rcpt)
		var te *textproto.Error
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &te) && te.Code != 421:
			res.refused = append(res.refused, refusal{addr: rcpt, err: te})
		default:
			return res, err
		}
	}
	if accepted == 0 {
		return res, refusedAll(res.refused)
	}
	if err := c.UpdateDeadline(timeout); err != nil {
		return res, err
	}
	w, err := c.Data()
	if err != nil {
		return res, err
	}
	if _, err := out.msg.WriteTo(w); err != nil {
		return res, err
	}
	if err := c.UpdateDeadline(timeout); err != nil {
		return res, err
	}
	res.committed = true
	if err := w.Close(); err != nil {
		return res, err
	}
	s.sent++
	res.code = 250
	if dc, ok := w.(*smtp.DataCloser); ok {
		res.reply = dc.ServerResponse()
	}
	return res, nil
}

// refusedAll is the error of a message whose every recipient was refused.
func refusedAll(refused []refusal) error {
	first := refused[0].err
	for _, r := range refused {
		if r.err.Code < 500 {
			first = r.err
			break
		}
	}
	parts := make([]string, len(refused))
	for i, r := range refused {
		parts[i] = fmt.Sprintf("%s: %d %s", r.addr, r.err.Code, r.err.Msg)
	}
	return &textproto.Error{Code: first.Code, Msg: "every recipient was refused: " + strings.Join(parts, "; ")}
}

// quit ends a session politely.
func (s *session) quit(timeout time.Duration) {
	if s.c.UpdateDeadline(timeout) == nil && s.c.Quit() == nil {
		return
	}
	s.close()
}

// close drops a session's connection.
func (s *session) close() { _ = s.conn.Close() }

// sweep closes the sessions idle for longer than IdleTimeout, and forgets
// pools left without sessions, such as an edited profile's old one.
func (e *Email) sweep(now time.Time) {
	e.mu.Lock()
	var expired []*session
	for key, p := range e.pools {
		p.mu.Lock()
		kept := p.idle[:0]
		for _, s := range p.idle {
			if now.Sub(s.idleAt) > e.opts.IdleTimeout {
				expired = append(expired, s)
			} else {
				kept = append(kept, s)
			}
		}
		clear(p.idle[len(kept):])
		p.idle = kept
		if len(p.idle) == 0 && len(p.slots) == 0 && now.Sub(p.lastUsed) > e.opts.IdleTimeout {
			p.closed = true
			delete(e.pools, key)
		}
		p.mu.Unlock()
	}
	e.mu.Unlock()
	for _, s := range expired {
		s.quit(e.opts.Timeout)
	}
}

// Run closes idle sessions as they expire, until ctx ends.
func (e *Email) Run(ctx context.Context) error {
	tick := time.NewTicker(max(e.opts.IdleTimeout/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			e.sweep(now)
		}
	}
}

// Close ends every idle session. Call it once deliveries have stopped.
func (e *Email) Close() {
	e.mu.Lock()
	var all []*session
	for key, p := range e.pools {
		p.mu.Lock()
		p.closed = true
		all = append(all, p.idle...)
		p.idle = nil
		p.mu.Unlock()
		delete(e.pools, key)
	}
	e.mu.Unlock()
	for _, s := range all {
		s.quit(e.opts.Timeout)
	}
}

// classify says what a failed attempt means: SMTP 421 and 4xx replies,
// timeouts and connection failures may pass; 5xx replies, addresses the
// egress policy forbids and refused credentials will not.
func classify(err error) error {
	var ae *delivery.AttemptError
	if errors.As(err, &ae) || errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, egress.ErrForbidden) {
		return delivery.PermanentError("forbidden-address", err)
	}
	var se *setupError
	staged := errors.As(err, &se)
	var te *textproto.Error
	if errors.As(err, &te) {
		class := "smtp-4xx"
		switch {
		case te.Code == 421:
			return delivery.RetryError("smtp-421", err)
		case staged && se.class == "auth":
			class = "auth"
		case te.Code >= 500:
			class = "smtp-5xx"
		}
		if te.Code >= 500 {
			return delivery.PermanentError(class, err)
		}
		return delivery.RetryError(class, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return delivery.RetryError("timeout", err)
	}
	if staged {
		if se.permanent {
			return delivery.PermanentError(se.class, err)
		}
		return delivery.RetryError(se.class, err)
	}
	return delivery.RetryError("network", err)
}
