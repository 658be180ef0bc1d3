package adminapi_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// emailSetup is what a tenant needs for email destinations: an SMTP
// profile and an email template that names none.
type emailSetup struct {
	key, profile, template string
}

// emailTenant creates tenant id with an SMTP profile, its default, and a
// template that sends through the default.
func (s *adminStack) emailTenant(id string) emailSetup {
	s.t.Helper()
	key := s.tenant(id)
	return emailSetup{key: key, profile: s.smtpProfile(key, "main"), template: s.emailTemplate(key, "")}
}

// smtpProfile creates an SMTP profile and returns its id.
func (s *adminStack) smtpProfile(key, name string) string {
	s.t.Helper()
	return s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key,
		`{"name":"`+name+`","host":"smtp.example.com","fromAddress":"billing@example.com"}`).str("id")
}

// emailTemplate creates an email template that names profile (none when
// empty) and returns its id.
func (s *adminStack) emailTemplate(key, profile string) string {
	s.t.Helper()
	body := `{"name":"low data","subject":"{{.Notification.Name}}","textBody":"State {{.Notification.State}}"`
	if profile != "" {
		body += `,"smtpProfileId":"` + profile + `"`
	}
	return s.want(http.StatusCreated, "POST", "/v1/email-templates", key, body+"}").str("id")
}

// emailDestination returns the body of an email destination with email
// as its channel object.
func emailDestination(email string) string {
	return `{"type":"email","name":"billing mail","email":` + email + `}`
}

func TestEmailDestinationsAreCheckedWhenSaved(t *testing.T) {
	s := startAdmin(t)
	acme := s.emailTenant("acme")
	// initech has a template but no SMTP profile, so no default.
	initech := emailSetup{key: s.tenant("initech")}
	initech.template = s.emailTemplate(initech.key, "")

	tpl := `"templateId":"` + acme.template + `"`
	bad := []struct {
		name, key, body, field string
	}{
		{"email type without its object", acme.key, `{"type":"email","name":"m"}`, "email"},
		{"email type with a webhook", acme.key,
			`{"type":"email","name":"m","webhook":{"url":"https://hooks.example.com/x"},"email":{` + tpl + `,"to":["ops@example.com"]}}`, "webhook"},
		{"webhook type with an email object", acme.key,
			`{"type":"webhook","name":"m","webhook":{"url":"https://hooks.example.com/x"},"email":{` + tpl + `,"to":["ops@example.com"]}}`, "email"},
		{"an unknown type", acme.key, `{"type":"sms","name":"m"}`, "type"},
		{"a display name", acme.key, emailDestination(`{` + tpl + `,"to":["ops@example.com","Ops <ops@example.com>"]}`), "email.to[1]"},
		{"a list of addresses in one", acme.key, emailDestination(`{` + tpl + `,"to":["a@example.com, b@example.com"]}`), "email.to[0]"},
		{"a header smuggled in", acme.key, emailDestination(`{` + tpl + `,"cc":["ops@example.com\r\nBcc: all@example.com"]}`), "email.cc[0]"},
		{"a trailing line break", acme.key, emailDestination(`{` + tpl + `,"to":["ops@example.com"],"bcc":["ops@example.com\n"]}`), "email.bcc[0]"},
		{"not an address", acme.key, emailDestination(`{` + tpl + `,"bcc":["ops"]}`), "email.bcc[0]"},
		{"an empty contact type", acme.key, emailDestination(`{` + tpl + `,"toContactTypes":[""]}`), "email.toContactTypes[0]"},
		{"a contact type in capitals", acme.key, emailDestination(`{` + tpl + `,"ccContactTypes":["Billing"]}`), "email.ccContactTypes[0]"},
		{"a contact type with a space", acme.key, emailDestination(`{` + tpl + `,"bccContactTypes":["billing","on call"]}`), "email.bccContactTypes[1]"},
		{"no recipient", acme.key,
			emailDestination(`{` + tpl + `,"to":[],"cc":[],"bcc":[],"toContactTypes":[],"ccContactTypes":[],"bccContactTypes":[]}`), "email"},
		{"no template", acme.key, emailDestination(`{"to":["ops@example.com"]}`), "email.templateId"},
		{"an unknown template", acme.key, emailDestination(`{"templateId":"tpl_nope","to":["ops@example.com"]}`), "email.templateId"},
		{"an unknown SMTP profile", acme.key,
			emailDestination(`{` + tpl + `,"smtpProfileId":"smtp_nope","to":["ops@example.com"]}`), "email.smtpProfileId"},
		{"no profile anywhere and no default", initech.key,
			emailDestination(`{"templateId":"` + initech.template + `","to":["ops@example.com"]}`), "email.smtpProfileId"},
	}
	for _, b := range bad {
		r := s.do("POST", "/v1/destinations", b.key, b.body)
		if r.status != http.StatusBadRequest || !slices.Contains(r.fields(), b.field) {
			t.Errorf("%s: POST %s = %d %s; want 400 naming %s", b.name, b.body, r.status, r.raw, b.field)
		}
	}
	for _, tenant := range []string{"acme", "initech"} {
		if n := len(s.store.List(tenant, configstore.KindDestination)); n != 0 {
			t.Errorf("tenant %s has %d destinations after refused writes", tenant, n)
		}
	}

	// A refused replace leaves the stored destination as it was.
	good := emailDestination(`{` + tpl + `,"to":["ops@example.com"]}`)
	id := s.want(http.StatusCreated, "POST", "/v1/destinations", acme.key, good).str("id")
	r := s.do("PUT", "/v1/destinations/"+id, acme.key, emailDestination(`{`+tpl+`,"to":["Ops <ops@example.com>"]}`))
	if r.status != http.StatusBadRequest || !slices.Contains(r.fields(), "email.to[0]") {
		t.Errorf("PUT with a display name = %d %s; want 400 naming email.to[0]", r.status, r.raw)
	}
	if got := s.want(http.StatusOK, "GET", "/v1/destinations/"+id, acme.key, ""); got.body["version"] != 1.0 {
		t.Errorf("the destination changed after a refused replace: %s", got.raw)
	}
}

func TestEmailDestinationStoredAndReadBack(t *testing.T) {
	s := startAdmin(t)
	acme := s.emailTenant("acme")
	second := s.smtpProfile(acme.key, "second")
	want := configstore.EmailDestination{
		TemplateID:      acme.template,
		SMTPProfileID:   second,
		To:              []string{"ops@example.com", "noc@example.com"},
		Cc:              []string{"finance@example.com"},
		Bcc:             []string{"audit@example.com"},
		ToContactTypes:  []string{"billing"},
		CcContactTypes:  []string{"technical", "noc-24x7"},
		BccContactTypes: []string{"service"},
	}
	email, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	created := s.want(http.StatusCreated, "POST", "/v1/destinations", acme.key, emailDestination(string(email)))
	id := created.str("id")
	if _, ok := created.body["secret"]; ok {
		t.Errorf("an email destination was created with a signing secret: %s", created.raw)
	}
	if created.header.Get("Location") != "/v1/destinations/"+id {
		t.Errorf("Location = %q, want /v1/destinations/%s", created.header.Get("Location"), id)
	}

	read := s.want(http.StatusOK, "GET", "/v1/destinations/"+id, acme.key, "")
	if read.str("type") != "email" || read.str("name") != "billing mail" || read.body["webhook"] != nil {
		t.Errorf("GET: %s; want type email, its name and no webhook", read.raw)
	}
	var shown configstore.EmailDestination
	raw, _ := json.Marshal(read.body["email"])
	if err := json.Unmarshal(raw, &shown); err != nil || !reflect.DeepEqual(shown, want) {
		t.Errorf("GET shows email %s, want %s", raw, email)
	}
	doc, ok := s.store.Get("acme", configstore.KindDestination, id)
	if !ok {
		t.Fatalf("destination %s is not in the view", id)
	}
	if d := configstore.Spec[configstore.Destination](doc); d.Email == nil || !reflect.DeepEqual(*d.Email, want) || d.Webhook != nil {
		t.Errorf("stored destination %+v; want email %+v and no webhook", d, want)
	}
	listed := s.want(http.StatusOK, "GET", "/v1/destinations", acme.key, "").items()
	if len(listed) != 1 || listed[0]["id"] != id || listed[0]["email"] == nil {
		t.Errorf("list: %v; want the email destination", listed)
	}

	// An email destination has no signing secret to show or rotate.
	s.want(http.StatusConflict, "GET", "/v1/destinations/"+id+"/secret", acme.key, "")
	s.want(http.StatusConflict, "POST", "/v1/destinations/"+id+":rotate-secret", acme.key, "")

	// Contact types alone are recipients enough, and the template's or
	// the default profile sends when the destination names none.
	onlyTypes := emailDestination(`{"templateId":"` + acme.template + `","bccContactTypes":["billing"]}`)
	replaced := s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, acme.key, onlyTypes, "If-Match", read.header.Get("ETag"))
	if replaced.body["version"] != 2.0 {
		t.Errorf("replace: %s; want version 2", replaced.raw)
	}
	if d := configstore.Spec[configstore.Destination](mustGet(t, s, "acme", id)); d.Email.SMTPProfileID != "" || !slices.Equal(d.Email.BccContactTypes, []string{"billing"}) || d.Email.To != nil {
		t.Errorf("stored after replace: %+v", *d.Email)
	}

	// Turned into a webhook, the destination gets a signing secret; turned
	// back into email, it shows none.
	s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, acme.key,
		`{"type":"webhook","name":"billing hook","webhook":{"url":"https://hooks.example.com/billing"}}`)
	if sec := s.want(http.StatusOK, "GET", "/v1/destinations/"+id+"/secret", acme.key, "").str("secret"); !strings.HasPrefix(sec, "whsec_") {
		t.Errorf("a destination turned into a webhook has secret %q", sec)
	}
	s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, acme.key, onlyTypes)
	s.want(http.StatusConflict, "GET", "/v1/destinations/"+id+"/secret", acme.key, "")
}

func mustGet(t *testing.T, s *adminStack, tenant, id string) configstore.Document {
	t.Helper()
	doc, ok := s.store.Get(tenant, configstore.KindDestination, id)
	if !ok {
		t.Fatalf("destination %s of %s is not in the view", id, tenant)
	}
	return doc
}

func TestTemplatesAndProfilesInUseCannotBeDeleted(t *testing.T) {
	s := startAdmin(t)
	cases := []struct {
		name string
		// alone: the profile is the tenant's only one, so its default;
		// else an older profile is the default.
		alone bool
		// destProfile, tplProfile: the destination, the template names
		// the profile.
		destProfile, tplProfile bool
		// deleted is "template" or "profile".
		deleted string
		// how is what the 409 says of the destination's use.
		how string
	}{
		{name: "a template a destination renders", deleted: "template", how: "destination dst_"},
		{name: "a profile a destination names", destProfile: true, deleted: "profile", how: "destination dst_"},
		{name: "a profile a destination's template names", tplProfile: true, deleted: "profile", how: "(through email template tpl_"},
		{name: "the only profile, a destination's default", alone: true, deleted: "profile", how: "(as the tenant's default)"},
	}
	for i, c := range cases {
		key := s.tenant("in-use-" + string(rune('a'+i)))
		if !c.alone {
			s.smtpProfile(key, "older default")
		}
		profile := s.smtpProfile(key, "used")
		tplProfile, email := "", `{"to":["ops@example.com"]`
		if c.tplProfile {
			tplProfile = profile
		}
		tpl := s.emailTemplate(key, tplProfile)
		email += `,"templateId":"` + tpl + `"`
		if c.destProfile {
			email += `,"smtpProfileId":"` + profile + `"`
		}
		dest := s.want(http.StatusCreated, "POST", "/v1/destinations", key, emailDestination(email+"}")).str("id")
		path := "/v1/email-templates/" + tpl
		if c.deleted == "profile" {
			path = "/v1/smtp-profiles/" + profile
		}

		r := s.do("DELETE", path, key, "")
		if detail, _ := r.body["detail"].(string); r.status != http.StatusConflict || !strings.Contains(detail, dest) || !strings.Contains(detail, c.how) {
			t.Errorf("%s: DELETE %s = %d %s; want 409 naming %s and saying %q", c.name, path, r.status, r.raw, dest, c.how)
		}
		s.want(http.StatusNoContent, "DELETE", "/v1/destinations/"+dest, key, "")
		if c.tplProfile {
			// The template still sends through the profile on its own.
			s.want(http.StatusConflict, "DELETE", path, key, "")
			s.want(http.StatusNoContent, "DELETE", "/v1/email-templates/"+tpl, key, "")
		}
		if r := s.do("DELETE", path, key, ""); r.status != http.StatusNoContent {
			t.Errorf("%s: DELETE %s once the destination is gone = %d %s, want 204", c.name, path, r.status, r.raw)
		}
	}
}

func TestEmailDestinationsCannotNameAnotherTenantsTemplateOrProfile(t *testing.T) {
	s := startAdmin(t)
	acme := s.emailTenant("acme")
	globex := s.emailTenant("globex")
	cases := []struct {
		field, theirs, unknown string
	}{
		{"email.templateId",
			`{"templateId":"` + globex.template + `","to":["ops@example.com"]}`,
			`{"templateId":"tpl_nope","to":["ops@example.com"]}`},
		{"email.smtpProfileId",
			`{"templateId":"` + acme.template + `","smtpProfileId":"` + globex.profile + `","to":["ops@example.com"]}`,
			`{"templateId":"` + acme.template + `","smtpProfileId":"smtp_nope","to":["ops@example.com"]}`},
	}
	for _, c := range cases {
		theirs := s.do("POST", "/v1/destinations", acme.key, emailDestination(c.theirs))
		unknown := s.do("POST", "/v1/destinations", acme.key, emailDestination(c.unknown))
		if theirs.status != http.StatusBadRequest || !slices.Equal(theirs.fields(), []string{c.field}) {
			t.Errorf("naming globex's in %s: %d %s; want 400 naming %s", c.field, theirs.status, theirs.raw, c.field)
		}
		if !reflect.DeepEqual(theirs.body["errors"], unknown.body["errors"]) {
			t.Errorf("naming globex's in %s answers %s, an unknown id %s; want the same", c.field, theirs.raw, unknown.raw)
		}
	}
	if n := len(s.store.List("acme", configstore.KindDestination)); n != 0 {
		t.Errorf("acme has %d destinations, want none", n)
	}

	// globex's destinations do not hold acme's template or profile.
	s.want(http.StatusCreated, "POST", "/v1/destinations", globex.key,
		emailDestination(`{"templateId":"`+globex.template+`","smtpProfileId":"`+globex.profile+`","to":["ops@example.com"]}`))
	s.want(http.StatusNoContent, "DELETE", "/v1/email-templates/"+acme.template, acme.key, "")
	s.want(http.StatusNoContent, "DELETE", "/v1/smtp-profiles/"+acme.profile, acme.key, "")
}
