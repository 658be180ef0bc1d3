package adminapi

import (
	"errors"
	"net"
	"net/http"
	"net/mail"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// SMTP profiles are served by their own handlers rather than the kind
// machinery: a profile's answer hides its password and says whether it is
// the default, which another document decides (configstore.SMTPDefault),
// and changing the default writes that document.

// smtpKind names SMTP profiles for problems and ids.
var smtpKind = kind{name: configstore.KindSMTPProfile, plural: "smtp-profiles", prefix: "smtp_"}

// smtpRoutes adds the SMTP profile routes.
func (a *API) smtpRoutes(rt *router, read, write func(http.HandlerFunc) http.Handler) {
	k := configstore.KindSMTPProfile
	rt.HandleKind("POST /v1/smtp-profiles", k, write(a.createSMTPProfile))
	rt.HandleKind("GET /v1/smtp-profiles", k, read(a.listSMTPProfiles))
	rt.HandleKind("GET /v1/smtp-profiles/{id}", k, read(a.getSMTPProfile))
	rt.HandleKind("PUT /v1/smtp-profiles/{id}", k, write(a.replaceSMTPProfile))
	rt.HandleKind("DELETE /v1/smtp-profiles/{id}", k, write(a.deleteSMTPProfile))
}

// smtpBody is an SMTP profile as a request gives it. Password is a
// pointer so that a replace without it keeps the stored one.
type smtpBody struct {
	Name        string  `json:"name"`
	Host        string  `json:"host"`
	Port        int     `json:"port"`
	FromName    string  `json:"fromName"`
	FromAddress string  `json:"fromAddress"`
	Username    string  `json:"username"`
	Password    *string `json:"password"`
	TLS         string  `json:"tls"`
	Default     *bool   `json:"default"`
}

// defaultPorts are the usual ports of each TLS mode.
var defaultPorts = map[string]int{configstore.TLSNone: 25, configstore.TLSStartTLS: 587, configstore.TLSImplicit: 465}

// checkSMTPProfile decodes and validates a profile; stored is the profile
// being replaced, if any.
func (a *API) checkSMTPProfile(w http.ResponseWriter, r *http.Request, stored *configstore.SMTPProfile) (configstore.SMTPProfile, *bool, error) {
	var b smtpBody
	if err := httpapi.DecodeJSON(w, r, &b); err != nil {
		return configstore.SMTPProfile{}, nil, err
	}
	p := configstore.SMTPProfile{Name: b.Name, Host: b.Host, Port: b.Port, FromName: b.FromName, FromAddress: b.FromAddress,
		Username: b.Username, TLS: b.TLS}
	if p.TLS == "" {
		p.TLS = configstore.TLSStartTLS
	}
	if _, ok := defaultPorts[p.TLS]; !ok {
		return p, nil, badRequest("tls", `must be "none", "starttls" or "tls"`)
	}
	if p.Port == 0 {
		p.Port = defaultPorts[p.TLS]
	}
	switch {
	case strings.TrimSpace(p.Name) == "":
		return p, nil, badRequest("name", "required")
	case !validHost(p.Host):
		return p, nil, badRequest("host", "a host name or IP address, without scheme or port")
	case p.Port < 1 || p.Port > 65535:
		return p, nil, badRequest("port", "between 1 and 65535")
	case strings.ContainsAny(p.FromName, "\r\n\x00"):
		return p, nil, badRequest("fromName", "must not hold line breaks")
	case !validAddress(p.FromAddress):
		return p, nil, badRequest("fromAddress", "an email address such as billing@example.com")
	case strings.ContainsAny(p.Username, "\r\n\x00"):
		return p, nil, badRequest("username", "must not hold line breaks")
	}
	switch {
	case b.Password != nil:
		p.Password = *b.Password
	case stored != nil && p.Username == stored.Username:
		p.Password = stored.Password
	}
	if strings.ContainsAny(p.Password, "\r\n\x00") {
		return p, nil, badRequest("password", "must not hold line breaks")
	}
	if p.Username == "" && p.Password != "" {
		return p, nil, badRequest("username", "required with a password")
	}
	return p, b.Default, nil
}

// validHost reports whether s is a host name or an IP address.
func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validAddress reports whether s is a bare email address.
func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// smtpResource is a profile as the API shows it: no password, whether one
// is set, and whether it is the tenant's default.
func (a *API) smtpResource(doc configstore.Document) (map[string]any, error) {
	res, err := resource(doc)
	if err != nil {
		return nil, err
	}
	delete(res, "password")
	res["passwordSet"] = configstore.Spec[configstore.SMTPProfile](doc).Password != ""
	def, ok := a.base.Config.DefaultSMTPProfile(doc.Tenant)
	res["default"] = ok && def.ID == doc.ID
	return res, nil
}

func (a *API) writeSMTPProfile(w http.ResponseWriter, r *http.Request, status int, doc configstore.Document) {
	res, err := a.smtpResource(doc)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, status, res)
}

// makeDefault points the tenant's default at profile id: one write, so no
// reader sees two defaults or none.
func (a *API) makeDefault(r *http.Request, tenant, id string) error {
	doc, err := configstore.NewDocument(tenant, configstore.KindSMTPDefault, configstore.SMTPDefaultID, configstore.SMTPDefault{ProfileID: id})
	if err == nil {
		_, err = a.base.Config.Put(r.Context(), doc, 0)
	}
	return err
}

// createSMTPProfile serves POST /v1/smtp-profiles. The tenant's first
// profile is its default; a later one becomes the default with
// "default": true.
func (a *API) createSMTPProfile(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	p, def, err := a.checkSMTPProfile(w, r, nil)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(tenant, configstore.KindSMTPDefault, configstore.SMTPDefaultID)()
	doc, err := configstore.NewDocument(tenant, configstore.KindSMTPProfile, smtpKind.prefix+strings.ToLower(ulid.Make().String()), p)
	if err == nil {
		doc, err = a.base.Config.Put(r.Context(), doc, 0)
	}
	if err == nil && def != nil && *def {
		err = a.makeDefault(r, tenant, doc.ID)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("Location", "/v1/smtp-profiles/"+doc.ID)
	a.writeSMTPProfile(w, r, http.StatusCreated, doc)
}

func (a *API) listSMTPProfiles(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	docs, next := paginate(a.base.Config.List(tenantOf(r), configstore.KindSMTPProfile), func(_ int, d configstore.Document) string { return d.ID }, p)
	items := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		res, err := a.smtpResource(d)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		items = append(items, res)
	}
	writePage(w, r, items, next)
}

func (a *API) getSMTPProfile(w http.ResponseWriter, r *http.Request) {
	doc, ok := a.base.Config.Get(tenantOf(r), configstore.KindSMTPProfile, r.PathValue("id"))
	if !ok {
		httpapi.WriteProblem(w, smtpKind.notFound())
		return
	}
	a.writeSMTPProfile(w, r, http.StatusOK, doc)
}

// replaceSMTPProfile serves PUT /v1/smtp-profiles/{id}, with If-Match. A
// body without a password keeps the stored one (for the same username);
// "default": true makes the profile the default, and the default cannot
// be unset but by making another one the default.
func (a *API) replaceSMTPProfile(w http.ResponseWriter, r *http.Request) {
	tenant, id := tenantOf(r), r.PathValue("id")
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	cur, ok := a.base.Config.Get(tenant, configstore.KindSMTPProfile, id)
	if !ok {
		httpapi.WriteProblem(w, smtpKind.notFound())
		return
	}
	stored := configstore.Spec[configstore.SMTPProfile](cur)
	p, def, err := a.checkSMTPProfile(w, r, &stored)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(tenant, configstore.KindSMTPDefault, configstore.SMTPDefaultID)()
	defer a.locks.lock(tenant, configstore.KindSMTPProfile, id)()
	if cur, err = a.current(smtpKind, tenant, id, pre); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if cd, ok := a.base.Config.DefaultSMTPProfile(tenant); def != nil && !*def && ok && cd.ID == id {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusConflict, "this profile is the default; make another profile the default instead",
			httpapi.FieldError{Field: "default", Message: "a tenant always has one default profile"}))
		return
	}
	doc, err := configstore.NewDocument(tenant, configstore.KindSMTPProfile, id, p)
	if err == nil {
		doc, err = a.base.Config.Put(r.Context(), doc, cur.Version)
	}
	if err == nil && def != nil && *def {
		err = a.makeDefault(r, tenant, id)
	}
	if errors.Is(err, configstore.ErrVersionConflict) {
		err = changedSince(smtpKind.name)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	a.writeSMTPProfile(w, r, http.StatusOK, doc)
}

// deleteSMTPProfile serves DELETE /v1/smtp-profiles/{id}. The default is
// refused while the tenant has other profiles, and so is a profile in use
// by an email template or an email destination (inUse).
func (a *API) deleteSMTPProfile(w http.ResponseWriter, r *http.Request) {
	tenant, id := tenantOf(r), r.PathValue("id")
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(tenant, configstore.KindSMTPDefault, configstore.SMTPDefaultID)()
	cur, err := a.current(smtpKind, tenant, id, pre)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	others := len(a.base.Config.List(tenant, configstore.KindSMTPProfile)) - 1
	if def, _ := a.base.Config.DefaultSMTPProfile(tenant); def.ID == id && others > 0 {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusConflict,
			"this profile is the default; make another profile the default before deleting it"))
		return
	}
	if err := a.inUse(tenant, configstore.KindSMTPProfile, id); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if err := a.base.Config.DeleteVersion(r.Context(), tenant, configstore.KindSMTPProfile, id, pre.expect(cur.Version)); err != nil {
		if errors.Is(err, configstore.ErrVersionConflict) {
			err = changedSince(smtpKind.name)
		}
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if others == 0 {
		// The last profile goes: so does the pointer to it, so that the
		// next profile created is the default.
		err := a.base.Config.Delete(r.Context(), tenant, configstore.KindSMTPDefault, configstore.SMTPDefaultID)
		if err != nil && !errors.Is(err, configstore.ErrNotFound) {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
