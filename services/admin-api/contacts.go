package adminapi

import (
	"net/http"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// Contacts are addressed by what identifies them, the account and the
// contact type, as LogiSense's one contact per type per account:
//
//	PUT    /v1/accounts/{accountId}/contacts/{type}   create or replace
//	GET    /v1/accounts/{accountId}/contacts/{type}
//	DELETE /v1/accounts/{accountId}/contacts/{type}
//	GET    /v1/accounts/{accountId}/contacts          the account's, by type
//
// A second PUT of a type replaces the first, so an account never has two
// contacts of one type.

// contactKind names contacts in problems.
var contactKind = kind{name: configstore.KindContact}

// maxAccountID bounds an account id.
const maxAccountID = 256

// contactRoutes adds the contact routes.
func (a *API) contactRoutes(rt *router, read, write func(http.HandlerFunc) http.Handler) {
	rt.Handle("PUT /v1/accounts/{accountId}/contacts/{type}", write(a.putContact))
	rt.Handle("GET /v1/accounts/{accountId}/contacts/{type}", read(a.getContact))
	rt.Handle("DELETE /v1/accounts/{accountId}/contacts/{type}", write(a.deleteContact))
	rt.Handle("GET /v1/accounts/{accountId}/contacts", read(a.listContacts))
}

// contactPath reads and checks the account id and contact type of a path.
func contactPath(r *http.Request) (accountID, contactType string, err error) {
	accountID, contactType = r.PathValue("accountId"), r.PathValue("type")
	if accountID == "" || len(accountID) > maxAccountID || strings.ContainsFunc(accountID, isControl) {
		return "", "", httpapi.NewProblem(http.StatusBadRequest, "the request is not valid",
			httpapi.FieldError{Field: "accountId", Message: "1 to 256 characters, no control characters"})
	}
	if r.PathValue("type") != "" || r.Method != http.MethodGet {
		if !validContactType(contactType) {
			return "", "", httpapi.NewProblem(http.StatusBadRequest, "the request is not valid",
				httpapi.FieldError{Field: "type", Message: "billing, service, technical, or a type of your own: a lower-case letter, then up to 31 lower-case letters, digits and dashes"})
		}
	}
	return accountID, contactType, nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// validContactType reports whether s can name a contact type.
func validContactType(s string) bool {
	if s == "" || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// contactResource is a contact as the API shows it.
func contactResource(doc configstore.Document) map[string]any {
	c := configstore.Spec[configstore.Contact](doc)
	return map[string]any{"accountId": c.AccountID, "type": c.Type, "name": c.Name, "email": c.Email,
		"version": doc.Version, "updatedAt": doc.UpdatedAt}
}

// putContact serves PUT /v1/accounts/{accountId}/contacts/{type}: 201
// when the account had no contact of the type, 200 when it replaced one
// (If-Match applies).
func (a *API) putContact(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	accountID, contactType, err := contactPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	var body struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	if err := httpapi.DecodeJSON(w, r, &body); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	switch {
	case strings.TrimSpace(body.Name) == "" || strings.ContainsFunc(body.Name, isControl):
		err = badRequest("name", "required, without control characters")
	case !validAddress(body.Email):
		err = badRequest("email", "an email address such as billing@example.com")
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	id := configstore.ContactID(accountID, contactType)
	defer a.locks.lock(tenant, configstore.KindContact, id)()
	cur, existed := a.base.Config.Get(tenant, configstore.KindContact, id)
	if !pre.holds(existed, cur.Version) {
		httpapi.WriteProblem(w, changedSince("contact"))
		return
	}
	doc, err := configstore.NewDocument(tenant, configstore.KindContact, id,
		configstore.Contact{AccountID: accountID, Type: contactType, Name: body.Name, Email: body.Email})
	if err == nil {
		doc, err = a.base.Config.Put(r.Context(), doc, cur.Version)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, status, contactResource(doc))
}

func (a *API) getContact(w http.ResponseWriter, r *http.Request) {
	accountID, contactType, err := contactPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	doc, ok := a.base.Config.Get(tenantOf(r), configstore.KindContact, configstore.ContactID(accountID, contactType))
	if !ok {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "the account has no contact of this type"))
		return
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusOK, contactResource(doc))
}

func (a *API) deleteContact(w http.ResponseWriter, r *http.Request) {
	accountID, contactType, err := contactPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	a.removeOf(w, r, contactKind, tenantOf(r), configstore.ContactID(accountID, contactType))
}

// listContacts serves GET /v1/accounts/{accountId}/contacts, ordered by
// type.
func (a *API) listContacts(w http.ResponseWriter, r *http.Request) {
	accountID, _, err := contactPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	var docs []configstore.Document
	for _, d := range a.base.Config.List(tenantOf(r), configstore.KindContact) {
		if configstore.Spec[configstore.Contact](d).AccountID == accountID {
			docs = append(docs, d)
		}
	}
	docs, next := paginate(docs, func(_ int, d configstore.Document) string { return d.ID }, p)
	items := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		items = append(items, contactResource(d))
	}
	writePage(w, r, items, next)
}
