// Package adminapi is Herald's configuration API. Tenants manage their
// rules and destinations here; every change is a document in the compacted
// config topic, which the other services follow. A write answers once the
// admin API's own view holds it, so a read that follows sees it.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/pkg/service"
)

// Config is the admin API's configuration.
type Config struct {
	service.Config
	// Egress is the policy destination URLs are checked against when saved.
	Egress egress.Config
	// SecretGrace is how long a rotated signing secret stays live.
	SecretGrace time.Duration `env:"WEBHOOK_SECRET_GRACE" envDefault:"24h"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if err := c.Egress.Validate(); err != nil {
		return err
	}
	if c.SecretGrace < 0 {
		return errors.New("HERALD_WEBHOOK_SECRET_GRACE: must not be negative")
	}
	if c.Secrets.Key == "" {
		return errors.New("HERALD_SECRET_KEY: required: the admin API seals secrets in the config topic with it (make one with `openssl rand -base64 32`)")
	}
	return c.Config.Validate()
}

// API serves the configuration routes.
type API struct {
	base  *service.Base
	keys  httpapi.KeyLookup
	rules *rules.Compiler

	policy      *egress.Policy
	secretGrace time.Duration
	deliveries  *deliveryLog
}

// New connects the admin API.
func New(ctx context.Context, c Config) (*API, error) {
	policy, err := egress.New(c.Egress)
	if err != nil {
		return nil, err
	}
	base, err := service.Start(ctx, "admin-api", c.Config)
	if err != nil {
		return nil, err
	}
	dl, err := newDeliveryLog(base)
	if err != nil {
		base.Close()
		return nil, err
	}
	return &API{base: base, keys: httpapi.StoreKeys(base.Config), rules: rules.NewCompiler(rules.DefaultLimits),
		policy: policy, secretGrace: c.SecretGrace, deliveries: dl}, nil
}

// Run runs the admin API until ctx ends.
func Run(ctx context.Context, c Config) error {
	api, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, api)
}

// Run follows the configuration and the delivery log until ctx ends.
func (a *API) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.base.FollowConfig(ctx) })
	g.Go(func() error { return a.deliveries.run(ctx) })
	return g.Wait()
}

// Close releases the clients.
func (a *API) Close() {
	a.deliveries.close()
	a.base.Close()
}

// Store returns the configuration view the API writes through.
func (a *API) Store() *configstore.Store { return a.base.Config }

// Base returns what the service shares with every other.
func (a *API) Base() *service.Base { return a.base }

// Routes adds the configuration routes.
func (a *API) Routes(mux *http.ServeMux) {
	read := func(h http.HandlerFunc) http.Handler { return httpapi.RequireKey(a.keys, httpapi.ScopeConfigRead, h) }
	write := func(h http.HandlerFunc) http.Handler { return httpapi.RequireKey(a.keys, httpapi.ScopeConfigWrite, h) }
	for _, k := range []kind{a.destinationKind(), a.ruleKind()} {
		mux.Handle("POST /v1/"+k.plural, write(a.create(k)))
		mux.Handle("GET /v1/"+k.plural, read(a.list(k)))
		mux.Handle("GET /v1/"+k.plural+"/{id}", read(a.get(k)))
		mux.Handle("PUT /v1/"+k.plural+"/{id}", write(a.replace(k)))
		mux.Handle("DELETE /v1/"+k.plural+"/{id}", write(a.remove(k)))
	}
	a.ruleRoutes(mux, read)
	a.catalogRoutes(mux, read, write)
	a.deliveryRoutes(mux, read, write)
}

// kind is one resource type of the API.
type kind struct {
	name   string // the document kind
	plural string // the path segment
	prefix string // of generated ids
	// check decodes and validates a request body into a spec; id is empty
	// when the resource is being created.
	check func(r *http.Request, w http.ResponseWriter, tenant, id string) (any, error)
}

func (a *API) create(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant := httpapi.PrincipalFrom(r.Context()).Tenant
		spec, err := k.check(r, w, tenant, "")
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		doc, err := configstore.NewDocument(tenant, k.name, k.prefix+strings.ToLower(ulid.Make().String()), spec)
		if err == nil {
			doc, err = a.base.Config.Put(r.Context(), doc, 0)
		}
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		w.Header().Set("Location", "/v1/"+k.plural+"/"+doc.ID)
		writeResource(w, r, a, http.StatusCreated, doc)
	}
}

func (a *API) list(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		docs := a.base.Config.List(httpapi.PrincipalFrom(r.Context()).Tenant, k.name)
		items := make([]map[string]any, 0, len(docs))
		for _, d := range docs {
			res, err := resource(d)
			if err != nil {
				httpapi.WriteError(w, r, a.base.Log, err)
				return
			}
			items = append(items, res)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"items": items})
	}
}

func (a *API) get(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		doc, ok := a.base.Config.Get(httpapi.PrincipalFrom(r.Context()).Tenant, k.name, r.PathValue("id"))
		if !ok {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no "+k.name+" with this id"))
			return
		}
		writeResource(w, r, a, http.StatusOK, doc)
	}
}

// replace stores a new spec for an existing resource. With If-Match it
// answers 412 unless the stored version is the one given.
func (a *API) replace(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant, id := httpapi.PrincipalFrom(r.Context()).Tenant, r.PathValue("id")
		if _, ok := a.base.Config.Get(tenant, k.name, id); !ok {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no "+k.name+" with this id"))
			return
		}
		var expect int64
		if m := r.Header.Get("If-Match"); m != "" {
			v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64)
			if err != nil || v < 1 {
				httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, "If-Match must be the version (ETag) the resource was read at"))
				return
			}
			expect = v
		}
		spec, err := k.check(r, w, tenant, id)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		doc, err := configstore.NewDocument(tenant, k.name, id, spec)
		if err == nil {
			doc, err = a.base.Config.Put(r.Context(), doc, expect)
		}
		if errors.Is(err, configstore.ErrVersionConflict) {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusPreconditionFailed, "the "+k.name+" changed since it was read; read it again"))
			return
		}
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		writeResource(w, r, a, http.StatusOK, doc)
	}
}

func (a *API) remove(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := a.base.Config.Delete(r.Context(), httpapi.PrincipalFrom(r.Context()).Tenant, k.name, r.PathValue("id"))
		if errors.Is(err, configstore.ErrNotFound) {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no "+k.name+" with this id"))
			return
		}
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func writeResource(w http.ResponseWriter, r *http.Request, a *API, status int, doc configstore.Document) {
	res, err := resource(doc)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if status == http.StatusCreated {
		revealSecret(doc, res)
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, status, res)
}

// resource is a document as the API shows it: its spec's fields with id,
// version and updatedAt.
func resource(doc configstore.Document) (map[string]any, error) {
	res := map[string]any{}
	if err := json.Unmarshal(doc.Spec, &res); err != nil {
		return nil, err
	}
	res["id"], res["version"], res["updatedAt"] = doc.ID, doc.Version, doc.UpdatedAt
	hideSecrets(doc, res)
	return res, nil
}

func jsonNumber(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonRaw is JSON already encoded, written as it is.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }
