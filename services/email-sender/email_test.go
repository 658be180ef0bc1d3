package emailsender_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	"github.com/heraldhq/herald/services/email-sender/internal/smtptest"
)

// TestEmailArrivesAsRendered sends one notification to a destination with
// fixed addresses and contact types in To, Cc and Bcc: the server gets
// one message whose envelope holds every recipient once, whose headers
// name the To and Cc recipients (non-ASCII names RFC 2047 encoded) and
// never the Bcc ones, with the rendered subject, the Message-ID of the
// notification and destination (the same on a second attempt), the
// notification id header, and both bodies as multipart/alternative, every
// line ending in CRLF. The contact type the account lacks is noted in the
// response.
func TestEmailArrivesAsRendered(t *testing.T) {
	srv := startSMTP(t, smtptest.Config{})
	store := newStore(t)
	profile := plainProfile(srv)
	profile.FromName = "Équipe Facturation"
	put(t, store, configstore.KindSMTPProfile, "main", profile)
	put(t, store, configstore.KindEmailTemplate, "low-balance", configstore.EmailTemplate{
		Name:     "Low balance",
		Subject:  "Solde bas — {{.Notification.Event.AccountID}} est {{.Notification.State}}",
		TextBody: "Account {{.Notification.Event.AccountID}} has {{.Notification.Fields.left}} MB left.\nRegards\n",
		HTMLBody: "<p>Account <b>{{.Notification.Event.AccountID}}</b> has {{.Notification.Fields.left}} MB left &amp; {{.Notification.Fields.tag}}.</p>",
	})
	put(t, store, configstore.KindContact, configstore.ContactID("acct-1", "billing"), configstore.Contact{AccountID: "acct-1", Type: "billing", Name: "Zoë Müller", Email: "zoe@acct.example"})
	put(t, store, configstore.KindContact, configstore.ContactID("acct-1", "service"), configstore.Contact{AccountID: "acct-1", Type: "service", Name: "Sam Service", Email: "sam@acct.example"})
	e := newEmail(t, store, testOptions(t))
	dest := configstore.EmailDestination{
		TemplateID: "low-balance",
		To:         []string{"Ops Desk <ops@herald.example>"}, ToContactTypes: []string{"billing"},
		Cc: []string{"cc@herald.example"}, CcContactTypes: []string{"service"},
		Bcc: []string{"audit@herald.example"}, BccContactTypes: []string{"technical"},
	}
	n := newNote("4f1c0d6c-0000-4000-8000-000000000001", "acct-1", map[string]string{"left": "42", "tag": `"<script>"`})

	resp, err := deliver(e, "dst_low", dest, n)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if resp.StatusCode != 250 || !strings.Contains(string(resp.Excerpt), "queued as") {
		t.Errorf("response %d %q, want 250 and the server's reply", resp.StatusCode, resp.Excerpt)
	}
	if !strings.Contains(string(resp.Excerpt), "account acct-1 has no technical contact") {
		t.Errorf("response excerpt %q does not say the technical contact is missing", resp.Excerpt)
	}
	if err := srv.Wait("message", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := srv.Events("message")[0]
	if got.MailFrom != "billing@herald.example" {
		t.Errorf("MAIL FROM %q, want the profile's address", got.MailFrom)
	}
	wantRcpts := []string{"ops@herald.example", "zoe@acct.example", "cc@herald.example", "sam@acct.example", "audit@herald.example"}
	if !slices.Equal(got.RcptTos, wantRcpts) {
		t.Errorf("RCPT TO %v, want %v", got.RcptTos, wantRcpts)
	}
	if i := bytes.Index(bytes.ReplaceAll(got.Data, []byte("\r\n"), nil), []byte("\n")); i >= 0 {
		t.Errorf("a line ends without CR at byte %d", i)
	}
	if bytes.Contains(bytes.ReplaceAll(got.Data, []byte("\r\n"), nil), []byte("\r")) {
		t.Error("a bare CR in the message")
	}
	m := parse(t, got.Data)
	for _, r := range m.rawHeader {
		if r > 127 {
			t.Fatalf("a header holds a non-ASCII character:\n%s", m.rawHeader)
		}
	}
	if s := m.decoded(t, "Subject"); s != "Solde bas — acct-1 est low" {
		t.Errorf("Subject %q", s)
	}
	if from := m.addresses(t, "From"); len(from) != 1 || from[0].Name != "Équipe Facturation" || from[0].Address != "billing@herald.example" {
		t.Errorf("From %v", from)
	}
	addrs := func(name string) []string {
		var out []string
		for _, a := range m.addresses(t, name) {
			out = append(out, fmt.Sprintf("%s <%s>", a.Name, a.Address))
		}
		return out
	}
	if to := addrs("To"); !slices.Equal(to, []string{"Ops Desk <ops@herald.example>", "Zoë Müller <zoe@acct.example>"}) {
		t.Errorf("To %v", to)
	}
	if cc := addrs("Cc"); !slices.Equal(cc, []string{" <cc@herald.example>", "Sam Service <sam@acct.example>"}) {
		t.Errorf("Cc %v", cc)
	}
	if m.header.Get("Bcc") != "" || strings.Contains(m.rawHeader, "audit@") {
		t.Errorf("the headers name the Bcc recipient:\n%s", m.rawHeader)
	}
	wantID := "<" + n.ID + ".dst_low@herald.example>"
	if id := m.header.Get("Message-Id"); id != wantID {
		t.Errorf("Message-ID %q, want %q", id, wantID)
	}
	if id := m.header.Get(emailsender.HeaderNotificationID); id != n.ID {
		t.Errorf("%s %q, want %q", emailsender.HeaderNotificationID, id, n.ID)
	}
	if d, err := m.header.Date(); err != nil || time.Since(d) > time.Minute || time.Until(d) > time.Minute {
		t.Errorf("Date %q (%v), want about now", m.header.Get("Date"), err)
	}
	if m.mediaType != "multipart/alternative" {
		t.Errorf("Content-Type %s, want multipart/alternative", m.mediaType)
	}
	if want := "Account acct-1 has 42 MB left.\r\nRegards\r\n"; m.text != want {
		t.Errorf("text body %q, want %q", m.text, want)
	}
	if want := "<p>Account <b>acct-1</b> has 42 MB left &amp; &lt;script&gt;.</p>"; m.html != want {
		t.Errorf("HTML body %q, want %q", m.html, want)
	}

	// A second attempt, as a retry would make, carries the same id.
	if _, err := deliver(e, "dst_low", dest, n); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait("message", 2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	again := parse(t, srv.Events("message")[1].Data)
	if id := again.header.Get("Message-Id"); id != wantID {
		t.Errorf("second attempt's Message-ID %q, want %q", id, wantID)
	}
}

// msgID is a msg-id whose left part is a dot-atom (RFC 5322 3.6.4), at
// the From domain of TestMessageIDNamesTheDestination.
var msgID = regexp.MustCompile("^<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@alerts[.]example>$")

// TestMessageIDNamesTheDestination shows that destinations whose ids hold
// characters a Message-ID cannot get distinct, valid ids, and that the
// From domain is taken from the template when it sets the sender.
func TestMessageIDNamesTheDestination(t *testing.T) {
	srv := startSMTP(t, smtptest.Config{})
	store := newStore(t)
	put(t, store, configstore.KindSMTPProfile, "main", plainProfile(srv))
	put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "s", TextBody: "b", From: "Alerts <alerts@alerts.example>"})
	e := newEmail(t, store, testOptions(t))
	n := newNote("4f1c0d6c-0000-4000-8000-000000000002", "acct-1", nil)
	ids := map[string]string{}
	for _, dest := range []string{"a b", "a.b", "a%2Eb", "a<b>", "ä"} {
		if _, err := deliver(e, dest, configstore.EmailDestination{TemplateID: "tpl", To: []string{"x@herald.example"}}, n); err != nil {
			t.Fatal(err)
		}
		if err := srv.Wait("message", len(ids)+1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		m := parse(t, srv.Events("message")[len(ids)].Data)
		id := m.header.Get("Message-Id")
		if !msgID.MatchString(id) || strings.Contains(id, "..") || !strings.HasPrefix(id, "<"+n.ID+".") {
			t.Errorf("destination %q: Message-ID %q is not the notification's id at the From domain", dest, id)
		}
		if prev, ok := ids[id]; ok {
			t.Errorf("destinations %q and %q share Message-ID %s", prev, dest, id)
		}
		ids[id] = dest
	}
}

// TestNoRecipientIsPermanent: a notification that resolves to no recipient
// fails for good, saying why, and nothing is sent.
func TestNoRecipientIsPermanent(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{})
	put(t, store, configstore.KindContact, configstore.ContactID("acct-2", "billing"), configstore.Contact{AccountID: "acct-2", Type: "billing", Email: "b@acct.example"})
	e := newEmail(t, store, testOptions(t))
	for _, c := range []struct {
		name    string
		account string
		dest    configstore.EmailDestination
		want    string
	}{
		{"account without the contact", "acct-1", configstore.EmailDestination{TemplateID: "tpl", ToContactTypes: []string{"billing"}},
			"no recipient: account acct-1 has no billing contact"},
		{"two missing contacts", "acct-2", configstore.EmailDestination{TemplateID: "tpl", ToContactTypes: []string{"service"}, BccContactTypes: []string{"technical"}},
			"no recipient: account acct-2 has no service contact; account acct-2 has no technical contact"},
		{"notification without an account", "", configstore.EmailDestination{TemplateID: "tpl", CcContactTypes: []string{"billing"}},
			"no recipient: the notification has no account, so no billing contact"},
		{"destination naming no one", "acct-2", configstore.EmailDestination{TemplateID: "tpl"},
			"no recipient: the destination names no address and no contact type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := deliver(e, "d", c.dest, newNote("n-"+c.name, c.account, nil))
			ae := wantFailure(t, err, delivery.Permanent, "no-recipient")
			if ae.Err.Error() != c.want {
				t.Errorf("error %q, want %q", ae.Err, c.want)
			}
		})
	}
	if n := srv.Count("connect"); n != 0 {
		t.Errorf("%d connections to the SMTP server, want none", n)
	}
}

// TestSomeRecipientsRefused: the message goes to the recipients the server
// accepts, and the response says which it refused and why; when it
// refuses all, the attempt fails: for good if every refusal is permanent,
// to be retried if one is temporary.
func TestSomeRecipientsRefused(t *testing.T) {
	srv, store := plainSetup(t, smtptest.Config{Rules: []smtptest.Rule{
		{Cmd: "RCPT", Addr: "gone@herald.example", Reply: "550 5.1.1 No such user"},
		{Cmd: "RCPT", Addr: "full@herald.example", Reply: "452 4.2.2 Mailbox full"},
	}})
	e := newEmail(t, store, testOptions(t))

	resp, err := deliver(e, "d", configstore.EmailDestination{TemplateID: "tpl", To: []string{"ok@herald.example", "gone@herald.example"}, Cc: []string{"full@herald.example"}}, newNote("n1", "acct-1", nil))
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	for _, want := range []string{"refused gone@herald.example: 550 5.1.1 No such user", "refused full@herald.example: 452 4.2.2 Mailbox full"} {
		if !strings.Contains(string(resp.Excerpt), want) {
			t.Errorf("response excerpt %q lacks %q", resp.Excerpt, want)
		}
	}
	if err := srv.Wait("message", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := srv.Events("message")[0].RcptTos; !slices.Equal(got, []string{"ok@herald.example"}) {
		t.Errorf("delivered to %v, want only ok@herald.example", got)
	}

	_, err = deliver(e, "d", configstore.EmailDestination{TemplateID: "tpl", To: []string{"gone@herald.example"}}, newNote("n2", "acct-1", nil))
	if ae := wantFailure(t, err, delivery.Permanent, "smtp-5xx"); !strings.Contains(ae.Error(), "gone@herald.example: 550") {
		t.Errorf("error %q does not name the refusal", ae)
	}
	_, err = deliver(e, "d", configstore.EmailDestination{TemplateID: "tpl", To: []string{"gone@herald.example", "full@herald.example"}}, newNote("n3", "acct-1", nil))
	wantFailure(t, err, delivery.Retry, "smtp-4xx")
	if n := srv.Count("message"); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestNoTokenInjectsAHeaderOrRecipient tries a CR, LF or NUL through every
// value that reaches a header (event fields, the notification's fields,
// its state, a contact's name and email) and through the bodies: a header
// value is refused as a permanent header-injection failure, a body
// carries it as text, and the server never sees an added header or
// recipient.
func TestNoTokenInjectsAHeaderOrRecipient(t *testing.T) {
	srv := startSMTP(t, smtptest.Config{})
	store := newStore(t)
	put(t, store, configstore.KindSMTPProfile, "main", plainProfile(srv))
	put(t, store, configstore.KindEmailTemplate, "subject-field", configstore.EmailTemplate{Subject: "Alert {{.Notification.Fields.note}}", TextBody: "b"})
	put(t, store, configstore.KindEmailTemplate, "subject-account", configstore.EmailTemplate{Subject: "Account {{.Notification.Event.AccountID}}", TextBody: "b"})
	put(t, store, configstore.KindEmailTemplate, "subject-state", configstore.EmailTemplate{Subject: "Now {{.Notification.State}}", TextBody: "b"})
	put(t, store, configstore.KindEmailTemplate, "bodies", configstore.EmailTemplate{Subject: "fixed",
		TextBody: "note: {{.Notification.Fields.note}}", HTMLBody: "<p>{{.Notification.Fields.note}}</p>"})
	e := newEmail(t, store, testOptions(t))

	const evil = "evil@attacker.example"
	payloads := []string{"x\r\nBcc: " + evil, "x\nBcc: " + evil, "x\rBcc: " + evil, "x\x00Bcc: " + evil, "x\r\n\r\nbody"}
	contact := func(account, name, email string) {
		put(t, store, configstore.KindContact, configstore.ContactID(account, "billing"), configstore.Contact{AccountID: account, Type: "billing", Name: name, Email: email})
	}
	to := []string{"ok@herald.example"}
	sent := 0
	for i, p := range payloads {
		note, _ := json.Marshal(p)
		field := map[string]string{"note": string(note)}
		cases := []struct {
			name    string
			tpl     string
			account string
			state   string
			dest    configstore.EmailDestination
			refused bool
		}{
			{"field in subject", "subject-field", "acct-1", "low", configstore.EmailDestination{To: to}, true},
			{"account in subject", "subject-account", "acct" + p, "low", configstore.EmailDestination{To: to}, true},
			{"state in subject", "subject-state", "acct-1", "low" + p, configstore.EmailDestination{To: to}, true},
			{"contact name", "bodies", fmt.Sprintf("name-%d", i), "low", configstore.EmailDestination{ToContactTypes: []string{"billing"}}, true},
			{"contact email", "bodies", fmt.Sprintf("email-%d", i), "low", configstore.EmailDestination{CcContactTypes: []string{"billing"}}, true},
			{"fixed address", "bodies", "acct-1", "low", configstore.EmailDestination{To: []string{"ok@herald.example" + p}}, true},
			{"bodies", "bodies", "acct-1", "low", configstore.EmailDestination{To: to}, false},
		}
		contact(fmt.Sprintf("name-%d", i), "Name"+p, "c@herald.example")
		contact(fmt.Sprintf("email-%d", i), "Name", "c@herald.example"+p)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%q", c.name, p), func(t *testing.T) {
				n := newNote(fmt.Sprintf("n-%d-%s", i, c.name), c.account, field)
				n.State = c.state
				c.dest.TemplateID = c.tpl
				_, err := deliver(e, "d", c.dest, n)
				if c.refused {
					wantFailure(t, err, delivery.Permanent, "header-injection")
					return
				}
				if err != nil {
					t.Fatalf("deliver: %v", err)
				}
				sent++
			})
		}
	}
	// A contact's email holding a list is not one address.
	contact("list", "Name", "c@herald.example, "+evil)
	_, err := deliver(e, "d", configstore.EmailDestination{TemplateID: "bodies", BccContactTypes: []string{"billing"}}, newNote("n-list", "list", map[string]string{"note": `"x"`}))
	wantFailure(t, err, delivery.Permanent, "address")

	if err := srv.Wait("message", sent, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.Events("rcpt") {
		if strings.Contains(r.Address, "attacker") {
			t.Errorf("RCPT TO %s", r.Address)
		}
	}
	for _, msg := range srv.Events("message") {
		m := parse(t, msg.Data)
		if strings.Contains(m.rawHeader, "attacker") || m.header.Get("Bcc") != "" {
			t.Errorf("injected header:\n%s", m.rawHeader)
		}
		if len(m.header) != len(parse(t, srv.Events("message")[0].Data).header) {
			t.Errorf("headers %v differ in number from the first message's", m.header)
		}
		if !strings.HasPrefix(m.text, "note: x") {
			t.Errorf("text body %q does not carry the token as text", m.text)
		}
	}
	t.Logf("%d messages with the tokens in their bodies, 0 injected headers or recipients", sent)
}
