package adminapi

import (
	"errors"
	"net/http"
	"net/mail"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/emailtemplate"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// templateKind serves /v1/email-templates through the kind machinery.
func (a *API) templateKind() kind {
	return kind{name: configstore.KindEmailTemplate, plural: "email-templates", prefix: "tpl_", check: a.checkTemplate}
}

// checkTemplate validates a canned email: its tokens against what a
// notification carries (emailtemplate.Compile), its sender, and its SMTP
// profile, which must exist.
func (a *API) checkTemplate(r *http.Request, w http.ResponseWriter, tenant, _ string) (any, error) {
	var t configstore.EmailTemplate
	if err := httpapi.DecodeJSON(w, r, &t); err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.Name) == "" {
		return nil, badRequest("name", "required")
	}
	if t.From != "" {
		if _, err := mail.ParseAddress(t.From); err != nil || strings.ContainsAny(t.From, "\r\n") {
			return nil, badRequest("from", `an email address, or a name and an address such as "Billing <billing@example.com>"`)
		}
	}
	if t.SMTPProfileID != "" {
		if _, ok := a.base.Config.Get(tenant, configstore.KindSMTPProfile, t.SMTPProfileID); !ok {
			return nil, badRequest("smtpProfileId", "no SMTP profile with this id")
		}
	}
	if _, err := emailtemplate.Compile(t); err != nil {
		var te *emailtemplate.Error
		if errors.As(err, &te) {
			return nil, badRequest(te.Field, te.Err.Error())
		}
		return nil, err
	}
	return t, nil
}
