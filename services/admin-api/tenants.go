package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	// A tenant's time zone is checked against the zone database, which
	// images built from scratch do not have.
	_ "time/tzdata"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

func (a *API) tenantKind() kind {
	return kind{name: configstore.KindTenant, plural: "tenants", prefix: "ten_"}
}

// tenantIDPattern is what a tenant id may be: it starts every config and
// event key of the tenant, so it holds no "/".
var tenantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// maxNameLen bounds the names of tenants and API keys.
const maxNameLen = 200

// tenantRoutes adds the operator's routes: tenants, and the API keys of
// each.
func (a *API) tenantRoutes(rt *router) {
	op := a.operatorOnly
	tk, kk := a.tenantKind(), a.apiKeyKind()
	rt.HandleKind("POST /v1/tenants", tk.name, op(a.createTenant))
	rt.HandleKind("GET /v1/tenants", tk.name, op(func(w http.ResponseWriter, r *http.Request) {
		a.listOf(w, r, tk, configstore.OperatorTenant)
	}))
	rt.HandleKind("GET /v1/tenants/{id}", tk.name, op(func(w http.ResponseWriter, r *http.Request) {
		a.getOf(w, r, tk, configstore.OperatorTenant, r.PathValue("id"))
	}))
	rt.HandleKind("PATCH /v1/tenants/{id}", tk.name, op(a.patchTenant))
	rt.HandleKind("DELETE /v1/tenants/{id}", tk.name, op(a.deleteTenant))
	rt.Handle("POST /v1/tenants/{id}/api-keys", op(a.issueTenantKey))
	rt.Handle("GET /v1/tenants/{id}/api-keys", op(a.ofTenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		a.listOf(w, r, kk, tenant)
	})))
	rt.Handle("DELETE /v1/tenants/{id}/api-keys/{keyId}", op(a.ofTenant(func(w http.ResponseWriter, r *http.Request, tenant string) {
		a.removeOf(w, r, kk, tenant, r.PathValue("keyId"))
	})))
}

// settingsRoutes adds a tenant's routes to its own settings: the tenant
// document, of which it may change only what settingsFields lists.
func (a *API) settingsRoutes(rt *router, read, write func(http.HandlerFunc) http.Handler) {
	tk := a.tenantKind()
	rt.Handle("GET /v1/settings", read(func(w http.ResponseWriter, r *http.Request) {
		a.getOf(w, r, tk, configstore.OperatorTenant, tenantOf(r))
	}))
	rt.Handle("PATCH /v1/settings", write(func(w http.ResponseWriter, r *http.Request) {
		a.patchTenantOf(w, r, tenantOf(r), settingsFields)
	}))
}

// settingsFields are the fields of its tenant document a tenant sets
// itself; the operator sets the others.
var settingsFields = []string{"timeZone"}

// ofTenant runs h for the tenant the path's {id} names, or answers 404.
func (a *API) ofTenant(h func(w http.ResponseWriter, r *http.Request, tenant string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, ok := a.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, id); !ok {
			httpapi.WriteProblem(w, a.tenantKind().notFound())
			return
		}
		h(w, r, id)
	}
}

// tenantRequest is the body of POST /v1/tenants.
type tenantRequest struct {
	// ID is the tenant's id; a new one when empty.
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	APIKey firstKey `json:"apiKey"`
}

// firstKey is what an operator may say of a new tenant's first API key,
// which has every scope.
type firstKey struct {
	// Name names the key; "initial" when empty.
	Name string `json:"name"`
	// Key is the key itself, for an operator who brings one; a new one
	// when empty.
	Key string `json:"key"`
}

// createTenant serves POST /v1/tenants: the tenant, and its first API key,
// with every scope, shown this once.
func (a *API) createTenant(w http.ResponseWriter, r *http.Request) {
	var req tenantRequest
	if err := httpapi.DecodeJSON(w, r, &req); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if req.ID == "" {
		req.ID = "ten_" + strings.ToLower(ulid.Make().String())
	}
	if req.APIKey.Name == "" {
		req.APIKey.Name = "initial"
	}
	err := checkName(req.Name)
	switch {
	case !tenantIDPattern.MatchString(req.ID):
		err = badRequest("id", "1 to 63 lower-case letters, digits, '-' or '_', the first a letter or digit")
	case err != nil:
	case checkName(req.APIKey.Name) != nil:
		err = prefixField(checkName(req.APIKey.Name), "apiKey.")
	case req.APIKey.Key != "":
		err = prefixField(checkKey(req.APIKey.Key), "apiKey.")
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	tenant, keyDoc, key, err := a.newTenant(r.Context(), req.ID, req.Name, req.APIKey)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	res, err := resource(tenant)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if res["apiKey"], err = keyView(keyDoc, key); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("Location", "/v1/tenants/"+tenant.ID)
	w.Header().Set("ETag", `"`+jsonNumber(tenant.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusCreated, res)
}

// newTenant stores tenant id and its first API key, with every scope. What
// a tenant of the same id left behind, were its deletion cut short, goes
// first, so a new tenant starts empty.
func (a *API) newTenant(ctx context.Context, id, name string, first firstKey) (tenant, keyDoc configstore.Document, key string, err error) {
	defer a.locks.lock(configstore.OperatorTenant, configstore.KindTenant, id)()
	if _, ok := a.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, id); ok {
		return tenant, keyDoc, "", httpapi.NewProblem(http.StatusConflict, "a tenant with this id exists",
			httpapi.FieldError{Field: "id", Message: "taken"})
	}
	if err := a.purge(ctx, id); err != nil {
		return tenant, keyDoc, "", err
	}
	// The key first: without its tenant it admits no one, and should the
	// tenant fail to be stored, the next creation clears it away.
	if keyDoc, key, err = a.issueKey(ctx, id, first.Name, httpapi.Scopes, first.Key); err != nil {
		return tenant, keyDoc, "", prefixField(err, "apiKey.")
	}
	if tenant, err = configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, id, configstore.Tenant{Name: name}); err != nil {
		return tenant, keyDoc, "", err
	}
	// Another replica may create the same id at once: the topic's order
	// decides which one did.
	tenant, err = a.base.Config.Put(ctx, tenant, configstore.Absent)
	if errors.Is(err, configstore.ErrVersionConflict) {
		err = httpapi.NewProblem(http.StatusConflict, "a tenant with this id exists", httpapi.FieldError{Field: "id", Message: "taken"})
	}
	return tenant, keyDoc, key, err
}

// patchTenant serves PATCH /v1/tenants/{id}: a JSON merge patch (RFC 7396)
// of the tenant, with If-Match.
func (a *API) patchTenant(w http.ResponseWriter, r *http.Request) {
	a.patchTenantOf(w, r, r.PathValue("id"), nil)
}

// patchTenantOf applies a JSON merge patch to tenant id; only, when not
// nil, lists the fields the patch may set.
func (a *API) patchTenantOf(w http.ResponseWriter, r *http.Request, id string, only []string) {
	k := a.tenantKind()
	var patch json.RawMessage
	if err := httpapi.DecodeJSON(w, r, &patch); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if err := patchOnly(patch, only); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(configstore.OperatorTenant, k.name, id)()
	cur, err := a.current(k, configstore.OperatorTenant, id, pre)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	var spec configstore.Tenant
	merged, err := mergePatch(cur.Spec, patch)
	if err == nil {
		err = httpapi.Unmarshal(merged, &spec)
	}
	if err == nil {
		err = checkName(spec.Name)
	}
	if err == nil {
		err = checkTimeZone(spec.TimeZone)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	doc, err := configstore.NewDocument(configstore.OperatorTenant, k.name, id, spec)
	if err == nil {
		doc, err = a.base.Config.Put(r.Context(), doc, cur.Version)
	}
	if errors.Is(err, configstore.ErrVersionConflict) {
		err = changedSince(k.name)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	writeResource(w, r, a, http.StatusOK, doc)
}

// mergePatch applies a JSON merge patch to a JSON document (RFC 7396).
func mergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	var d, p any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(patch)))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, httpapi.NewProblem(http.StatusBadRequest, "the body is not valid JSON")
	}
	return json.Marshal(merge(d, p))
}

func merge(doc, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = merge(d[k], v)
		}
	}
	return d
}

// deleteTenant serves DELETE /v1/tenants/{id}, with If-Match. The tenant
// goes first, which stops it everywhere at once: its keys admit no one,
// the evaluator runs none of its rules. Then every document of the tenant
// goes, destinations first, so senders drop what is on its way to them.
// A deletion cut short is finished by deleting again.
func (a *API) deleteTenant(w http.ResponseWriter, r *http.Request) {
	k, id := a.tenantKind(), r.PathValue("id")
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(configstore.OperatorTenant, k.name, id)()
	cur, ok := a.base.Config.Get(configstore.OperatorTenant, k.name, id)
	switch {
	case !ok && len(a.base.Config.ListTenant(id)) == 0:
		err = k.notFound()
	case ok && !pre.holds(true, cur.Version):
		err = changedSince(k.name)
	case ok:
		err = a.base.Config.DeleteVersion(r.Context(), configstore.OperatorTenant, k.name, id, pre.expect(cur.Version))
		if errors.Is(err, configstore.ErrVersionConflict) {
			err = changedSince(k.name)
		}
	}
	if err == nil {
		// Finish even when the caller goes away.
		err = a.purge(context.WithoutCancel(r.Context()), id)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	a.base.Log.Info("tenant deleted", "tenant", id)
	w.WriteHeader(http.StatusNoContent)
}

// purge deletes every document of a tenant: destinations first, then the
// rest.
func (a *API) purge(ctx context.Context, tenant string) error {
	var dests, rest []configstore.Document
	for _, d := range a.base.Config.ListTenant(tenant) {
		if d.Kind == configstore.KindDestination {
			dests = append(dests, d)
		} else {
			rest = append(rest, d)
		}
	}
	for _, docs := range [][]configstore.Document{dests, rest} {
		g, gctx := errgroup.WithContext(ctx)
		// Tombstones in flight together share the producer's batches.
		g.SetLimit(32)
		for _, d := range docs {
			g.Go(func() error {
				err := a.base.Config.Delete(gctx, d.Tenant, d.Kind, d.ID)
				if errors.Is(err, configstore.ErrNotFound) {
					return nil
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// prefixField puts prefix before the fields a problem names.
func prefixField(err error, prefix string) error {
	var p *httpapi.Problem
	if !errors.As(err, &p) {
		return err
	}
	out := *p
	out.Errors = make([]httpapi.FieldError, len(p.Errors))
	for i, fe := range p.Errors {
		out.Errors[i] = httpapi.FieldError{Field: prefix + fe.Field, Message: fe.Message}
	}
	return &out
}

// patchOnly refuses a merge patch that sets a field only does not list;
// a nil only allows any.
func patchOnly(patch json.RawMessage, only []string) error {
	if only == nil {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(patch, &fields); err != nil {
		return badRequest("", "must be a JSON object")
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !slices.Contains(only, name) {
			return badRequest(name, "not a setting a tenant changes; settings are "+strings.Join(only, ", "))
		}
	}
	return nil
}

// checkTimeZone refuses a time zone that is not an IANA name; empty means
// UTC.
func checkTimeZone(tz string) error {
	if tz == "" {
		return nil
	}
	// "Local" is whatever zone the server runs in, not a tenant's.
	if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
		return badRequest("timeZone", "not an IANA time zone name, such as Europe/Madrid")
	}
	return nil
}

func checkName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return badRequest("name", "required")
	case len(name) > maxNameLen:
		return badRequest("name", "at most 200 bytes")
	}
	return nil
}

// SeedTenant makes sure tenant id exists and that key (a new one when
// empty) is one of its API keys with every scope, and returns the key. It
// is how tests set up a tenant without the operator token; storing a key
// again keeps the tenant's other keys valid.
func (a *API) SeedTenant(ctx context.Context, id, name, key string) (string, error) {
	if err := a.base.Config.WaitCaughtUp(ctx); err != nil {
		return "", err
	}
	if _, ok := a.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, id); !ok {
		_, _, key, err := a.newTenant(ctx, id, name, firstKey{Name: "seed", Key: key})
		return key, err
	}
	if key != "" {
		if doc, ok := a.base.Config.APIKeyByHash(configstore.HashAPIKey(key)); ok && doc.Tenant == id {
			return key, nil
		}
	}
	_, key, err := a.issueKey(ctx, id, "seed", httpapi.Scopes, key)
	return key, err
}
