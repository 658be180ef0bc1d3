package emailsender

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	netmail "net/mail"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/emailtemplate"
	"github.com/heraldhq/herald/pkg/notification"
)

// HeaderNotificationID carries the notification's id in every email.
const HeaderNotificationID = "X-Herald-Notification-Id"

// ConfigView is the configuration the channel reads; *configstore.Store is
// one.
type ConfigView interface {
	Get(tenant, kind, id string) (configstore.Document, bool)
	DefaultSMTPProfile(tenant string) (configstore.Document, bool)
	Contact(tenant, accountID, contactType string) (configstore.Contact, bool)
}

// Options tune the email channel.
type Options struct {
	// Policy judges every SMTP server address when it is dialled.
	Policy *egress.Policy
	// Timeout bounds the dial, each SMTP command, and the message's DATA.
	Timeout time.Duration
	// PoolSize bounds the sessions open to one SMTP profile.
	PoolSize int
	// IdleTimeout closes a session unused for that long.
	IdleTimeout time.Duration
	// SessionMessages closes a session after that many messages; 0 means
	// no limit.
	SessionMessages int
	// AllowPlaintext permits profiles with tls none, and AUTH without TLS.
	AllowPlaintext bool
	// RootCAs, when set, replaces the system's root certificates (tests).
	RootCAs *x509.CertPool
	// Tracer, when set, gives each SMTP transaction a span; nil means
	// tracing is off.
	Tracer trace.Tracer
}

// Email is the email channel: it renders the destination's template for
// each notification and sends it through the tenant's SMTP profile, over
// a pool of sessions per profile.
type Email struct {
	view ConfigView
	opts Options
	helo string

	mu        sync.Mutex
	templates map[string]*emailtemplate.Template // by tenant, id and version
	pools     map[poolKey]*pool
}

// NewEmail returns the channel, reading configuration from view.
func NewEmail(view ConfigView, o Options) *Email {
	helo, err := os.Hostname()
	if err != nil || helo == "" {
		helo = "localhost"
	}
	return &Email{view: view, opts: o, helo: helo, templates: map[string]*emailtemplate.Template{}, pools: map[poolKey]*pool{}}
}

// Deliver sends the notification as the destination's email.
func (e *Email) Deliver(ctx context.Context, d *delivery.Delivery) (delivery.Response, error) {
	spec := d.Destination.Email
	if spec == nil {
		return delivery.Response{}, delivery.PermanentError("config", errors.New("not an email destination"))
	}
	n := d.Notification
	tmplDoc, ok := e.view.Get(n.TenantID, configstore.KindEmailTemplate, spec.TemplateID)
	if !ok {
		return delivery.Response{}, delivery.PermanentError("config", fmt.Errorf("email template %q does not exist", spec.TemplateID))
	}
	tmpl := configstore.Spec[configstore.EmailTemplate](tmplDoc)
	profileDoc, err := e.profile(n.TenantID, spec, tmpl)
	if err != nil {
		return delivery.Response{}, err
	}
	compiled, err := e.compile(tmplDoc)
	if err != nil {
		return delivery.Response{}, delivery.PermanentError("template", err)
	}
	rendered, err := compiled.Render(n)
	if errors.Is(err, emailtemplate.ErrHeaderInjection) {
		return delivery.Response{}, delivery.PermanentError("header-injection", err)
	} else if err != nil {
		return delivery.Response{}, delivery.PermanentError("template", err)
	}
	rcpts, err := e.recipients(n, spec)
	if err != nil {
		return delivery.Response{}, err
	}
	profile := configstore.Spec[configstore.SMTPProfile](profileDoc)
	out, err := compose(n, d.DestinationID, tmpl, profile, rendered, rcpts, time.Now())
	if err != nil {
		return delivery.Response{}, err
	}
	p, err := e.pool(profileDoc)
	if err != nil {
		return delivery.Response{}, err
	}
	var span trace.Span
	if e.opts.Tracer != nil {
		ctx, span = e.opts.Tracer.Start(ctx, "smtp send", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("server.address", profile.Host), attribute.String("herald.smtp_profile", profileDoc.ID)))
	}
	res, err := p.send(ctx, out)
	if span != nil {
		span.SetAttributes(attribute.Int("herald.status_code", res.code))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
	resp := delivery.Response{StatusCode: res.code, Excerpt: []byte(res.excerpt(rcpts.missing))}
	if err != nil {
		var te *textproto.Error
		if errors.As(err, &te) {
			resp.StatusCode = te.Code
		}
		return resp, classify(err)
	}
	return resp, nil
}

// profile returns the SMTP profile a destination sends through: its own,
// else its template's, else the tenant's default.
func (e *Email) profile(tenant string, spec *configstore.EmailDestination, tmpl configstore.EmailTemplate) (configstore.Document, error) {
	id := spec.SMTPProfileID
	if id == "" {
		id = tmpl.SMTPProfileID
	}
	if id == "" {
		doc, ok := e.view.DefaultSMTPProfile(tenant)
		if !ok {
			return doc, delivery.PermanentError("config", errors.New("the tenant has no SMTP profile"))
		}
		return doc, nil
	}
	doc, ok := e.view.Get(tenant, configstore.KindSMTPProfile, id)
	if !ok {
		return doc, delivery.PermanentError("config", fmt.Errorf("SMTP profile %q does not exist", id))
	}
	return doc, nil
}

// compile returns the compiled template of doc, compiling each version
// once.
func (e *Email) compile(doc configstore.Document) (*emailtemplate.Template, error) {
	key := fmt.Sprintf("%s\x00%s\x00%d", doc.Tenant, doc.ID, doc.Version)
	e.mu.Lock()
	t, ok := e.templates[key]
	e.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := emailtemplate.Compile(configstore.Spec[configstore.EmailTemplate](doc))
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.templates) > 10000 {
		clear(e.templates) // templates change rarely; keep the cache bounded
	}
	e.templates[key] = t
	return t, nil
}

// recipientList is who an email goes to: the header recipients, the Bcc
// recipients that only the envelope names, and the contact types that the
// account lacks.
type recipientList struct {
	to, cc, bcc []*netmail.Address
	missing     []string
}

// recipients resolves the destination's fixed addresses and the contacts
// of its contact types on the notification's account.
func (e *Email) recipients(n *notification.Notification, spec *configstore.EmailDestination) (recipientList, error) {
	var r recipientList
	account := ""
	if n.Event.AccountID != nil {
		account = *n.Event.AccountID
	}
	add := func(list *[]*netmail.Address, field string, fixed, types []string) error {
		for _, s := range fixed {
			if err := headerSafe("a "+field+" address", s); err != nil {
				return err
			}
			a, err := netmail.ParseAddress(s)
			if err != nil {
				return delivery.PermanentError("address", fmt.Errorf("%s address %q: %w", field, s, err))
			}
			*list = append(*list, a)
		}
		for _, ct := range types {
			if account == "" {
				r.missing = append(r.missing, fmt.Sprintf("the notification has no account, so no %s contact", ct))
				continue
			}
			c, ok := e.view.Contact(n.TenantID, account, ct)
			if !ok {
				r.missing = append(r.missing, fmt.Sprintf("account %s has no %s contact", account, ct))
				continue
			}
			a, err := contactAddress(account, c)
			if err != nil {
				return err
			}
			*list = append(*list, a)
		}
		return nil
	}
	if err := add(&r.to, "To", spec.To, spec.ToContactTypes); err != nil {
		return r, err
	}
	if err := add(&r.cc, "Cc", spec.Cc, spec.CcContactTypes); err != nil {
		return r, err
	}
	if err := add(&r.bcc, "Bcc", spec.Bcc, spec.BccContactTypes); err != nil {
		return r, err
	}
	if len(r.to)+len(r.cc)+len(r.bcc) == 0 {
		why := "the destination names no address and no contact type"
		if len(r.missing) > 0 {
			why = strings.Join(r.missing, "; ")
		}
		return r, delivery.PermanentError("no-recipient", errors.New("no recipient: "+why))
	}
	return r, nil
}

// contactAddress returns a contact's address, refusing a name or email
// that could add a header or a recipient.
func contactAddress(account string, c configstore.Contact) (*netmail.Address, error) {
	what := fmt.Sprintf("the %s contact of account %s", c.Type, account)
	if err := headerSafe(what+"'s name", c.Name); err != nil {
		return nil, err
	}
	if err := headerSafe(what+"'s email", c.Email); err != nil {
		return nil, err
	}
	a, err := netmail.ParseAddress(c.Email)
	if err == nil && a.Name != "" {
		err = errors.New("holds a name")
	}
	if err != nil {
		return nil, delivery.PermanentError("address", fmt.Errorf("%s has an email that is not one address (%q): %w", what, c.Email, err))
	}
	return &netmail.Address{Name: c.Name, Address: a.Address}, nil
}

// headerSafe refuses a value bound for a header that holds CR, LF or NUL.
func headerSafe(what, v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return delivery.PermanentError("header-injection", fmt.Errorf("%s holds a line break or NUL, which could add a header or a recipient", what))
	}
	return nil
}

// outgoing is a composed email and its envelope.
type outgoing struct {
	from  string   // MAIL FROM
	rcpts []string // RCPT TO: To, Cc and Bcc, each address once
	msg   *mail.Msg
}

// compose builds the email: From from the template or the profile, To and
// Cc headers, Bcc in the envelope only, a Message-ID that every retry
// repeats, and the rendered bodies (multipart/alternative when both
// exist). The envelope sender is the profile's address, where bounces go.
func compose(n *notification.Notification, destID string, t configstore.EmailTemplate, p configstore.SMTPProfile,
	m emailtemplate.Message, r recipientList, now time.Time) (*outgoing, error) {
	if err := headerSafe("the subject", m.Subject); err != nil {
		return nil, err
	}
	from, err := sender(t, p)
	if err != nil {
		return nil, err
	}
	out := &outgoing{from: p.FromAddress, msg: mail.NewMsg(mail.WithNoDefaultUserAgent())}
	if out.from == "" {
		out.from = from.Address
	}
	seen := map[string]bool{}
	for _, list := range [][]*netmail.Address{r.to, r.cc, r.bcc} {
		for _, a := range list {
			if k := strings.ToLower(a.Address); !seen[k] {
				seen[k] = true
				out.rcpts = append(out.rcpts, a.Address)
			}
		}
	}
	msg := out.msg
	msg.FromMailAddress(from)
	if len(r.to) > 0 {
		msg.ToMailAddress(r.to...)
	}
	if len(r.cc) > 0 {
		msg.CcMailAddress(r.cc...)
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(messageID(n.ID, destID, from.Address))
	msg.SetDateWithValue(now)
	msg.SetGenHeader(mail.Header(HeaderNotificationID), n.ID)
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)
	case m.HTML != "":
		msg.SetBodyString(mail.TypeTextHTML, m.HTML)
	default:
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
	}
	return out, nil
}

// sender is the From address: the template's, else the profile's name and
// address.
func sender(t configstore.EmailTemplate, p configstore.SMTPProfile) (*netmail.Address, error) {
	if t.From != "" {
		if err := headerSafe("the template's from", t.From); err != nil {
			return nil, err
		}
		a, err := netmail.ParseAddress(t.From)
		if err != nil {
			return nil, delivery.PermanentError("address", fmt.Errorf("the template's from %q: %w", t.From, err))
		}
		return a, nil
	}
	if err := headerSafe("the SMTP profile's from name", p.FromName); err != nil {
		return nil, err
	}
	if err := headerSafe("the SMTP profile's from address", p.FromAddress); err != nil {
		return nil, err
	}
	a, err := netmail.ParseAddress(p.FromAddress)
	if err == nil && a.Name != "" {
		err = errors.New("holds a name")
	}
	if err != nil {
		return nil, delivery.PermanentError("address", fmt.Errorf("the SMTP profile's from address %q: %w", p.FromAddress, err))
	}
	return &netmail.Address{Name: p.FromName, Address: a.Address}, nil
}

// messageID is the Message-ID (without its angle brackets) of the email of
// a notification to a destination: the same on every attempt, so that
// receivers can drop duplicates. It is "{notification}.{destination}@{the
// From domain}", with every byte of the destination id that is not
// atext, and every "%" and ".", percent-escaped: so distinct ids stay
// distinct and the result is a valid msg-id.
func messageID(notificationID, destID, from string) string {
	domain := "herald"
	if at := strings.LastIndexByte(from, '@'); at >= 0 && dotAtom(from[at+1:]) {
		domain = from[at+1:]
	}
	var b strings.Builder
	for i := 0; i < len(destID); i++ {
		c := destID[i]
		if atext(c) && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return notificationID + "." + b.String() + "@" + domain
}

// atext reports whether c may appear in a dot-atom (RFC 5322 3.2.3).
func atext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// dotAtom reports whether s is a plain dot-atom such as example.com.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !atext(s[i]) {
			return false
		}
	}
	return true
}

// excerpt is the attempt log's account of a result: the server's reply,
// the recipients it refused and why, and the contacts the account lacks.
func (r result) excerpt(missing []string) string {
	var b strings.Builder
	if r.reply != "" {
		fmt.Fprintf(&b, "%d %s\n", r.code, r.reply)
	}
	for _, x := range r.refused {
		fmt.Fprintf(&b, "refused %s: %d %s\n", x.addr, x.err.Code, x.err.Msg)
	}
	for _, m := range missing {
		fmt.Fprintf(&b, "not sent: %s\n", m)
	}
	return b.String()
}
