package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// defaults returns the ids of the listed SMTP profiles that say they are
// the default.
func defaults(r reply) []string {
	var out []string
	for _, p := range r.items() {
		if p["default"] == true {
			out = append(out, p["id"].(string))
		}
	}
	return out
}

func TestSMTPProfilesHaveExactlyOneDefault(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	profile := func(name, extra string) string {
		return `{"name":"` + name + `","host":"smtp.example.com","fromAddress":"billing@example.com","username":"u","password":"pw-` + name + `"` + extra + `}`
	}
	a := s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key, profile("a", ""))
	if a.body["default"] != true || a.body["passwordSet"] != true || a.body["password"] != nil {
		t.Errorf("the first profile: %s; want the default, passwordSet and no password", a.raw)
	}
	if a.body["port"] != 587.0 || a.body["tls"] != "starttls" {
		t.Errorf("defaults: port %v, tls %v; want 587, starttls", a.body["port"], a.body["tls"])
	}
	b := s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key, profile("b", ""))
	if b.body["default"] != false {
		t.Errorf("a second profile took the default: %s", b.raw)
	}
	c := s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key, profile("c", `,"default":true`))
	if got := defaults(s.want(http.StatusOK, "GET", "/v1/smtp-profiles", key, "")); !slices.Equal(got, []string{c.str("id")}) {
		t.Errorf("defaults after creating c as default: %v, want only c", got)
	}

	// The default moves with one write; b's password stays when the body
	// leaves it out.
	cur := s.want(http.StatusOK, "GET", "/v1/smtp-profiles/"+b.str("id"), key, "")
	body := `{"name":"b","host":"smtp2.example.com","fromAddress":"billing@example.com","username":"u","default":true}`
	s.want(http.StatusPreconditionFailed, "PUT", "/v1/smtp-profiles/"+b.str("id"), key, body, "If-Match", `"99"`)
	s.want(http.StatusOK, "PUT", "/v1/smtp-profiles/"+b.str("id"), key, body, "If-Match", cur.header.Get("ETag"))
	if got := defaults(s.want(http.StatusOK, "GET", "/v1/smtp-profiles", key, "")); !slices.Equal(got, []string{b.str("id")}) {
		t.Errorf("defaults after making b the default: %v, want only b", got)
	}
	stored, _ := s.store.Get("acme", configstore.KindSMTPProfile, b.str("id"))
	if p := configstore.Spec[configstore.SMTPProfile](stored); p.Password != "pw-b" || p.Host != "smtp2.example.com" {
		t.Errorf("stored profile b: %+v; want its password kept and the new host", p)
	}

	unset := strings.Replace(body, `"default":true`, `"default":false`, 1)
	if r := s.want(http.StatusConflict, "PUT", "/v1/smtp-profiles/"+b.str("id"), key, unset); !slices.Contains(r.fields(), "default") {
		t.Errorf("unsetting the default: %s, want a problem naming default", r.raw)
	}
	s.want(http.StatusConflict, "DELETE", "/v1/smtp-profiles/"+b.str("id"), key, "")
	s.want(http.StatusNoContent, "DELETE", "/v1/smtp-profiles/"+a.str("id"), key, "")
	s.want(http.StatusNoContent, "DELETE", "/v1/smtp-profiles/"+c.str("id"), key, "")
	// Alone, the default may go; the next profile is the default again.
	s.want(http.StatusNoContent, "DELETE", "/v1/smtp-profiles/"+b.str("id"), key, "")
	if d := s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key, profile("d", "")); d.body["default"] != true {
		t.Errorf("the only profile is not the default: %s", d.raw)
	}

	bad := []struct{ body, field string }{
		{`{"name":"x","host":"smtp://mail.example.com","fromAddress":"a@example.com"}`, "host"},
		{`{"name":"x","host":"mail.example.com","port":70000,"fromAddress":"a@example.com"}`, "port"},
		{`{"name":"x","host":"mail.example.com","tls":"ssl","fromAddress":"a@example.com"}`, "tls"},
		{`{"name":"x","host":"mail.example.com","fromAddress":"Billing <a@example.com>"}`, "fromAddress"},
		{`{"name":"x","host":"mail.example.com","fromAddress":"a@example.com","fromName":"A\r\nBcc: x@example.com"}`, "fromName"},
		{`{"name":"x","host":"mail.example.com","fromAddress":"a@example.com","password":"p"}`, "username"},
		{`{"host":"mail.example.com","fromAddress":"a@example.com"}`, "name"},
	}
	for _, b := range bad {
		if r := s.want(http.StatusBadRequest, "POST", "/v1/smtp-profiles", key, b.body); !slices.Contains(r.fields(), b.field) {
			t.Errorf("POST %s: problem %s does not name %s", b.body, r.raw, b.field)
		}
	}
}

func TestEmailTemplatesCheckTheirTokensWhenSaved(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	profile := s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key,
		`{"name":"main","host":"smtp.example.com","fromAddress":"billing@example.com"}`).str("id")
	tpl := s.want(http.StatusCreated, "POST", "/v1/email-templates", key, `{"name":"low data",`+
		`"subject":"{{.Notification.Name}}: {{.Notification.State}}",`+
		`"htmlBody":"<p>Account {{.Notification.Event.AccountID}} has {{.Notification.New.remaining}} MB left</p>",`+
		`"textBody":"Plan {{.Notification.Fields.planid}}","from":"Billing <billing@example.com>","smtpProfileId":"`+profile+`"}`)
	if tpl.str("id") == "" || tpl.str("smtpProfileId") != profile {
		t.Fatalf("template: %s", tpl.raw)
	}

	bad := []struct{ body, field, msg string }{
		{`{"name":"t","subject":"Now {{.Notification.Stat}}","textBody":"x"}`, "subject", "subject:1:19"},
		{`{"name":"t","subject":"s","htmlBody":"<p>{{.Notification.Event.Iccid}}</p>"}`, "htmlBody", "can't evaluate field Iccid"},
		{`{"name":"t","subject":"s","textBody":"{{.Notification.Name"}`, "textBody", "unclosed action"},
		{`{"name":"t","subject":"Hi\r\nBcc: all@example.com","textBody":"x"}`, "subject", "line break"},
		{`{"name":"t","subject":"s"}`, "textBody", "required"},
		{`{"name":"t","subject":"s","textBody":"x","smtpProfileId":"smtp_nope"}`, "smtpProfileId", "no SMTP profile"},
		{`{"name":"t","subject":"s","textBody":"x","from":"not an address"}`, "from", "email address"},
	}
	for _, b := range bad {
		r := s.want(http.StatusBadRequest, "POST", "/v1/email-templates", key, b.body)
		if !slices.Contains(r.fields(), b.field) || !strings.Contains(r.raw, b.msg) {
			t.Errorf("POST %s: %s; want a problem on %s saying %q", b.body, r.raw, b.field, b.msg)
		}
	}

	// The profile a template sends through cannot go from under it.
	s.want(http.StatusConflict, "DELETE", "/v1/smtp-profiles/"+profile, key, "")
	s.want(http.StatusNoContent, "DELETE", "/v1/email-templates/"+tpl.str("id"), key, "")
	s.want(http.StatusNoContent, "DELETE", "/v1/smtp-profiles/"+profile, key, "")
}

func TestAnAccountHasOneContactPerType(t *testing.T) {
	s := startAdmin(t)
	key, other := s.tenant("acme"), s.tenant("globex")
	const acct = "/v1/accounts/acct-1/contacts"
	s.want(http.StatusCreated, "PUT", acct+"/billing", key, `{"name":"Ada","email":"ada@example.com"}`)
	replaced := s.want(http.StatusOK, "PUT", acct+"/billing", key, `{"name":"Grace","email":"grace@example.com"}`)
	if replaced.str("name") != "Grace" || replaced.body["version"] != 2.0 {
		t.Errorf("a second PUT of a type should replace the contact: %s", replaced.raw)
	}
	s.want(http.StatusCreated, "PUT", acct+"/technical", key, `{"name":"Linus","email":"linus@example.com"}`)
	s.want(http.StatusCreated, "PUT", acct+"/noc-24x7", key, `{"name":"NOC","email":"noc@example.com"}`)
	s.want(http.StatusCreated, "PUT", "/v1/accounts/acct-2/contacts/billing", key, `{"name":"Other","email":"other@example.com"}`)

	list := s.want(http.StatusOK, "GET", acct, key, "").items()
	var types []string
	for _, c := range list {
		types = append(types, c["type"].(string))
	}
	if !slices.Equal(types, []string{"billing", "noc-24x7", "technical"}) {
		t.Errorf("account acct-1 lists types %v, want billing, noc-24x7, technical", types)
	}
	if got := s.want(http.StatusOK, "GET", acct+"/billing", key, ""); got.str("email") != "grace@example.com" || got.str("accountId") != "acct-1" {
		t.Errorf("GET billing contact: %s", got.raw)
	}
	if c, ok := s.store.Contact("acme", "acct-1", "billing"); !ok || c.Name != "Grace" {
		t.Errorf("the view's billing contact of acct-1: %+v, %v", c, ok)
	}

	s.want(http.StatusNotFound, "GET", acct+"/billing", other, "")
	if items := s.want(http.StatusOK, "GET", acct, other, "").items(); len(items) != 0 {
		t.Errorf("another tenant lists %v", items)
	}
	s.want(http.StatusNotFound, "DELETE", acct+"/billing", other, "")

	s.want(http.StatusNoContent, "DELETE", acct+"/billing", key, "")
	s.want(http.StatusNotFound, "GET", acct+"/billing", key, "")

	bad := []struct{ path, body, field string }{
		{acct + "/billing", `{"name":"A","email":"not-an-address"}`, "email"},
		{acct + "/billing", `{"name":"","email":"a@example.com"}`, "name"},
		{acct + "/Billing", `{"name":"A","email":"a@example.com"}`, "type"},
	}
	for _, b := range bad {
		if r := s.want(http.StatusBadRequest, "PUT", b.path, key, b.body); !slices.Contains(r.fields(), b.field) {
			t.Errorf("PUT %s %s: problem %s does not name %s", b.path, b.body, r.raw, b.field)
		}
	}
}
