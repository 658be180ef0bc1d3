package devstack_test

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/services/devstack"
	"github.com/heraldhq/herald/services/devstack/mailcatcher"
)

// TestReadmeEmailWalkthroughOnDevstack runs the README's email walkthrough
// against the devstack and the mail catcher: an SMTP profile on the
// catcher, a template, the account's billing contact, an email destination
// and a rule; one event; then the message the catcher gets, checked header
// by header.
func TestReadmeEmailWalkthroughOnDevstack(t *testing.T) {
	got := make(chan mailcatcher.Message, 4)
	catcher, err := mailcatcher.Listen("127.0.0.1:0", func(m mailcatcher.Message) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = catcher.Close() })
	_, port, _ := net.SplitHostPort(catcher.Addr())

	s := startDevstack(t, devstack.Config{APIKey: "hk_mail"})
	c := client{t: t, base: "http://" + s.HTTPAddr}
	const key = "hk_mail"
	c.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key,
		`{"name":"local","host":"127.0.0.1","port":`+port+`,"fromName":"Herald demo","fromAddress":"alerts@example.com","tls":"none"}`)
	tpl := c.want(http.StatusCreated, "POST", "/v1/email-templates", key, `{"name":"low balance",`+
		`"subject":"{{.Notification.Name}}: account {{.Notification.Event.AccountID}} is {{.Notification.State}}",`+
		`"textBody":"{{.Notification.New.remaining}} of {{.Notification.New.total}} {{.Notification.New.unit}} left.",`+
		`"htmlBody":"<p><b>{{.Notification.New.remaining}}</b> of {{.Notification.New.total}} {{.Notification.New.unit}} left.</p>"}`)
	c.want(http.StatusCreated, "PUT", "/v1/accounts/acct-1/contacts/billing", key, `{"name":"Ana Núñez","email":"ana@example.com"}`)
	dest := c.want(http.StatusCreated, "POST", "/v1/destinations", key, fmt.Sprintf(
		`{"type":"email","name":"billing mail","email":{"templateId":%q,"toContactTypes":["billing"],"cc":["ops@example.com"],"bcc":["audit@example.com"]}}`, tpl["id"]))
	rule := c.want(http.StatusCreated, "POST", "/v1/rules", key, fmt.Sprintf(`{"name":"low data by email",`+
		`"on":{"entityTypes":["Balance"],"operations":["UPDATE"]},`+
		`"when":"new.remaining < new.total * 0.2 && old.remaining >= old.total * 0.2",`+
		`"notification":{"name":"UnitAllowanceThreshold","state":"low"},"destinations":[%q]}`, dest["id"]))
	if rule["id"] == nil {
		t.Fatalf("rule not created: %v", rule)
	}
	c.want(http.StatusAccepted, "POST", "/v1/events", key, `{"entityType":"Balance","entityId":"bal-2","operation":"UPDATE","accountId":"acct-1",`+
		`"old":{"id":"bal-2","accountId":"acct-1","unit":"MB","total":1000,"used":700,"remaining":300},`+
		`"new":{"id":"bal-2","accountId":"acct-1","unit":"MB","total":1000,"used":850,"remaining":150}}`)

	var m mailcatcher.Message
	select {
	case m = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("no email within 30s")
	}
	if m.From != "alerts@example.com" {
		t.Errorf("envelope from %q, want the profile's address", m.From)
	}
	rcpt := slices.Sorted(slices.Values(m.To))
	if want := []string{"ana@example.com", "audit@example.com", "ops@example.com"}; !slices.Equal(rcpt, want) {
		t.Errorf("envelope recipients %v, want %v", rcpt, want)
	}
	h := m.Header
	subject, err := (&mimeDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "UnitAllowanceThreshold: account acct-1 is low" {
		t.Errorf("Subject %q (%v), want the rendered template", subject, err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != "ana@example.com" || to[0].Name != "Ana Núñez" {
		t.Errorf("To %q (%v), want the billing contact with her name", h.Get("To"), err)
	}
	if cc := h.Get("Cc"); !strings.Contains(cc, "ops@example.com") {
		t.Errorf("Cc %q, want ops@example.com", cc)
	}
	if h.Get("Bcc") != "" || strings.Contains(string(m.Raw), "audit@example.com") {
		t.Error("the Bcc recipient shows in the message")
	}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != "alerts@example.com" || from[0].Name != "Herald demo" {
		t.Errorf("From %q (%v), want the profile's name and address", h.Get("From"), err)
	}
	id := h.Get("X-Herald-Notification-Id")
	if id == "" || !strings.Contains(h.Get("Message-Id"), id) {
		t.Errorf("Message-ID %q does not carry the notification id %q", h.Get("Message-Id"), id)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type %q, want multipart/alternative with both bodies", ct)
	}
	for _, part := range []string{"150 of 1000 MB left.", "<b>150</b>"} {
		if !strings.Contains(string(m.Raw), part) {
			t.Errorf("the message lacks %q", part)
		}
	}
}

var mimeDecoder mime.WordDecoder
