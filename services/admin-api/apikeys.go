package adminapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

func (a *API) apiKeyKind() kind {
	return kind{name: configstore.KindAPIKey, plural: "api-keys", prefix: "key_"}
}

// Bounds of API keys.
const (
	maxKeysPerTenant = 100
	minKeyLen        = 6
	maxKeyLen        = 256
)

// NewAPIKey returns a fresh random API key: "hk_" and 24 random bytes in
// hex.
func NewAPIKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "hk_" + hex.EncodeToString(b)
}

// apiKeyRoutes adds a tenant's routes for its own API keys. A key is shown
// once, when created; only its hash is stored. Revoking one takes effect
// on every service as soon as it reads the tombstone from the config
// topic.
func (a *API) apiKeyRoutes(rt *router, read, write func(http.HandlerFunc) http.Handler) {
	k := a.apiKeyKind()
	rt.HandleKind("POST /v1/api-keys", k.name, write(a.createKey))
	rt.HandleKind("GET /v1/api-keys", k.name, read(a.list(k)))
	rt.HandleKind("GET /v1/api-keys/{id}", k.name, read(a.get(k)))
	rt.HandleKind("DELETE /v1/api-keys/{id}", k.name, write(a.remove(k)))
}

// keyRequest is the body of POST /v1/api-keys.
type keyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

func (req keyRequest) check() error {
	if err := checkName(req.Name); err != nil {
		return err
	}
	if len(req.Scopes) == 0 {
		return badRequest("scopes", "at least one of "+strings.Join(httpapi.Scopes, ", "))
	}
	for i, s := range req.Scopes {
		switch {
		case !slices.Contains(httpapi.Scopes, s):
			return badRequest(fmt.Sprintf("scopes[%d]", i), "one of "+strings.Join(httpapi.Scopes, ", "))
		case slices.Index(req.Scopes, s) < i:
			return badRequest(fmt.Sprintf("scopes[%d]", i), "given twice")
		}
	}
	return nil
}

// createKey serves POST /v1/api-keys. A key may only hand out scopes it
// holds itself.
func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	p := httpapi.PrincipalFrom(r.Context())
	var req keyRequest
	err := httpapi.DecodeJSON(w, r, &req)
	if err == nil {
		err = req.check()
	}
	for i, s := range req.Scopes {
		if err == nil && !slices.Contains(p.Scopes, s) {
			err = httpapi.NewProblem(http.StatusForbidden, "a key can only give the scopes it holds",
				httpapi.FieldError{Field: fmt.Sprintf("scopes[%d]", i), Message: "not held by the key making this request"})
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	doc, key, err := a.issueKey(r.Context(), p.Tenant, req.Name, req.Scopes, "")
	a.writeKey(w, r, doc, key, "/v1/api-keys/", err)
}

// tenantKeyRequest is the body of POST /v1/tenants/{id}/api-keys.
type tenantKeyRequest struct {
	keyRequest
	// Key is the key itself, for an operator who brings one; a new one
	// when empty.
	Key string `json:"key"`
}

// issueTenantKey serves POST /v1/tenants/{id}/api-keys: the operator
// gives a tenant a key, such as when it has lost every other.
func (a *API) issueTenantKey(w http.ResponseWriter, r *http.Request) {
	var req tenantKeyRequest
	err := httpapi.DecodeJSON(w, r, &req)
	if err == nil {
		err = req.check()
	}
	if err == nil && req.Key != "" {
		err = checkKey(req.Key)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	a.ofTenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		doc, key, err := a.issueKey(r.Context(), tenant, req.Name, req.Scopes, req.Key)
		a.writeKey(w, r, doc, key, "/v1/tenants/"+tenant+"/api-keys/", err)
	})(w, r)
}

// writeKey answers the creation of an API key: the key, this once.
func (a *API) writeKey(w http.ResponseWriter, r *http.Request, doc configstore.Document, key, path string, err error) {
	var res map[string]any
	if err == nil {
		res, err = keyView(doc, key)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("Location", path+doc.ID)
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusCreated, res)
}

// keyView is a key just created as the API shows it: with the key.
func keyView(doc configstore.Document, key string) (map[string]any, error) {
	res, err := resource(doc)
	if err != nil {
		return nil, err
	}
	res["key"] = key
	return res, nil
}

// checkKey checks a key an operator brings: it travels in an HTTP header.
func checkKey(key string) error {
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return badRequest("key", fmt.Sprintf("%d to %d characters", minKeyLen, maxKeyLen))
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c >= 0x7f {
			return badRequest("key", "printable ASCII characters without spaces")
		}
	}
	return nil
}

// issueKey stores an API key of tenant, key or a new one, and returns it
// with the key.
func (a *API) issueKey(ctx context.Context, tenant, name string, scopes []string, key string) (configstore.Document, string, error) {
	// One key at a time: the count and the uniqueness checks below hold
	// until the key is stored.
	defer a.locks.lock(configstore.OperatorTenant, configstore.KindAPIKey, "")()
	if n := len(a.base.Config.List(tenant, configstore.KindAPIKey)); n >= maxKeysPerTenant {
		return configstore.Document{}, "", httpapi.NewProblem(http.StatusUnprocessableEntity,
			fmt.Sprintf("the tenant has %d API keys, the most it may have; revoke one first", n))
	}
	if key == "" {
		key = NewAPIKey()
	}
	hash := configstore.HashAPIKey(key)
	if _, taken := a.base.Config.APIKeyByHash(hash); taken {
		return configstore.Document{}, "", httpapi.NewProblem(http.StatusConflict, "this key is in use",
			httpapi.FieldError{Field: "key", Message: "in use; choose another or leave it out"})
	}
	doc, err := configstore.NewDocument(tenant, configstore.KindAPIKey, "key_"+strings.ToLower(ulid.Make().String()), configstore.APIKey{
		Name: name, Hash: hash, Prefix: key[:min(len(key), 7)], Scopes: scopes,
	})
	if err != nil {
		return doc, "", err
	}
	doc, err = a.base.Config.Put(ctx, doc, 0)
	return doc, key, err
}
