// Package adminapi is Herald's configuration API. The operator manages
// tenants here with the operator token; tenants manage their API keys,
// rules and destinations with their keys. Every change is a document in the
// compacted config topic, which the other services follow. A write answers
// once the admin API's own view holds it, so a read that follows sees it.
//
// Every route is in one table (RouteTable) that Routes registers from, with
// who may call it. Resources of a kind share one CRUD machinery: lists are
// paginated, and replace and delete take If-Match.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/apidoc"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/subscription"
)

// Config is the admin API's configuration.
type Config struct {
	service.Config
	// Egress is the policy destination URLs are checked against when saved.
	Egress egress.Config
	// SecretGrace is how long a rotated signing secret stays live.
	SecretGrace time.Duration `env:"WEBHOOK_SECRET_GRACE" envDefault:"24h"`
	// AdminToken is the operator token, which manages tenants; without
	// it (or AdminTokenFile) the operator routes admit no one.
	AdminToken string `env:"ADMIN_TOKEN"`
	// AdminTokenFile is a file holding the operator token, such as a
	// mounted secret; read at start.
	AdminTokenFile string `env:"ADMIN_TOKEN_FILE"`
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
	if _, err := c.operatorToken(); err != nil {
		return err
	}
	return c.Config.Validate()
}

// minAdminToken is the shortest operator token accepted.
const minAdminToken = 16

// operatorToken returns the operator token, read from AdminTokenFile when
// that is set; surrounding white space, such as a final newline, is not
// part of it. Without either, there is none.
func (c Config) operatorToken() (string, error) {
	token, name := c.AdminToken, "HERALD_ADMIN_TOKEN"
	if c.AdminTokenFile != "" {
		if c.AdminToken != "" {
			return "", errors.New("HERALD_ADMIN_TOKEN, HERALD_ADMIN_TOKEN_FILE: set one, not both")
		}
		b, err := os.ReadFile(c.AdminTokenFile)
		if err != nil {
			return "", fmt.Errorf("HERALD_ADMIN_TOKEN_FILE: %w", err)
		}
		token, name = strings.TrimSpace(string(b)), "HERALD_ADMIN_TOKEN_FILE"
		if token == "" {
			return "", fmt.Errorf("%s: %s is empty", name, c.AdminTokenFile)
		}
	}
	if token != "" && len(token) < minAdminToken {
		return "", fmt.Errorf("%s: the token has fewer than %d characters", name, minAdminToken)
	}
	return token, nil
}

// API serves the configuration routes.
type API struct {
	base     *service.Base
	keys     httpapi.KeyLookup
	operator httpapi.OperatorToken
	rules    *rules.Compiler
	locks    keyLocks

	policy      *egress.Policy
	secretGrace time.Duration
	deliveries  *deliveryLog
	subs        *subscription.Store
}

// New connects the admin API.
func New(ctx context.Context, c Config) (*API, error) {
	policy, err := egress.New(c.Egress)
	if err != nil {
		return nil, err
	}
	token, err := c.operatorToken()
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
	subs, err := subscription.Open(base.KafkaOpts, base.Topics.Subscriptions, base.Log)
	if err != nil {
		dl.close()
		base.Close()
		return nil, err
	}
	if token == "" {
		base.Log.Info("operator routes are off: neither HERALD_ADMIN_TOKEN nor HERALD_ADMIN_TOKEN_FILE is set")
	}
	return &API{base: base, keys: httpapi.StoreKeys(base.Config), operator: httpapi.NewOperatorToken(token),
		rules: rules.NewCompiler(rules.DefaultLimits), policy: policy, secretGrace: c.SecretGrace, deliveries: dl, subs: subs}, nil
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
	g.Go(func() error { return a.followSubscriptions(ctx) })
	return g.Wait()
}

// Close releases the clients.
func (a *API) Close() {
	a.subs.Close()
	a.deliveries.close()
	a.base.Close()
}

// Store returns the configuration view the API writes through.
func (a *API) Store() *configstore.Store { return a.base.Config }

// Base returns what the service shares with every other.
func (a *API) Base() *service.Base { return a.base }

// Routes adds the configuration routes, those RouteTable lists, and GET
// /openapi.json, the document that describes them.
func (a *API) Routes(mux *http.ServeMux) {
	for _, r := range a.RouteTable() {
		mux.Handle(r.Pattern, r.handler)
	}
	apidoc.Register(mux)
}

// RouteTable returns every route of the admin API.
func (a *API) RouteTable() []Route {
	rt := &router{}
	read, write := a.scoped(httpapi.ScopeConfigRead), a.scoped(httpapi.ScopeConfigWrite)
	// The resources served by the kind machinery, one line each.
	for _, k := range []kind{a.destinationKind(), a.ruleKind(), a.templateKind()} {
		rt.kind(a, k, read, write)
	}
	a.tenantRoutes(rt)
	a.settingsRoutes(rt, read, write)
	a.apiKeyRoutes(rt, read, write)
	a.ruleRoutes(rt, read)
	a.catalogRoutes(rt, read, write)
	a.deliveryRoutes(rt, read, write)
	a.smtpRoutes(rt, read, write)
	a.contactRoutes(rt, read, write)
	a.subscriptionRoutes(rt, read, write)
	return rt.routes
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

// notFound is the answer for an id the tenant has no resource of k with:
// the same whether the id is unknown or another tenant's.
func (k kind) notFound() *httpapi.Problem {
	return httpapi.NewProblem(http.StatusNotFound, "no "+k.name+" with this id")
}

func (a *API) create(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant := tenantOf(r)
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
	return func(w http.ResponseWriter, r *http.Request) { a.listOf(w, r, k, tenantOf(r)) }
}

// listOf writes a page of tenant's resources of kind k, in the order of
// their ids.
func (a *API) listOf(w http.ResponseWriter, r *http.Request, k kind, tenant string) {
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	docs, next := paginate(a.base.Config.List(tenant, k.name), func(_ int, d configstore.Document) string { return d.ID }, p)
	items := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		res, err := resource(d)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		items = append(items, res)
	}
	writePage(w, r, items, next)
}

func (a *API) get(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { a.getOf(w, r, k, tenantOf(r), r.PathValue("id")) }
}

func (a *API) getOf(w http.ResponseWriter, r *http.Request, k kind, tenant, id string) {
	doc, ok := a.base.Config.Get(tenant, k.name, id)
	if !ok {
		httpapi.WriteProblem(w, k.notFound())
		return
	}
	writeResource(w, r, a, http.StatusOK, doc)
}

// replace stores a new spec for an existing resource. With If-Match it
// answers 412 unless the stored version is the one given.
func (a *API) replace(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant, id := tenantOf(r), r.PathValue("id")
		if _, ok := a.base.Config.Get(tenant, k.name, id); !ok {
			httpapi.WriteProblem(w, k.notFound())
			return
		}
		pre, err := ifMatch(r)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		spec, err := k.check(r, w, tenant, id)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		defer a.locks.lock(tenant, k.name, id)()
		cur, err := a.current(k, tenant, id, pre)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		doc, err := configstore.NewDocument(tenant, k.name, id, spec)
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
}

func (a *API) remove(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { a.removeOf(w, r, k, tenantOf(r), r.PathValue("id")) }
}

// removeOf deletes tenant's resource id of kind k. With If-Match it
// answers 412 unless the stored version is the one given, and 409 while
// something uses the resource (inUse).
func (a *API) removeOf(w http.ResponseWriter, r *http.Request, k kind, tenant, id string) {
	pre, err := ifMatch(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(tenant, k.name, id)()
	cur, err := a.current(k, tenant, id, pre)
	if err == nil {
		err = a.inUse(tenant, k.name, id)
	}
	if err == nil {
		err = a.base.Config.DeleteVersion(r.Context(), tenant, k.name, id, pre.expect(cur.Version))
		switch {
		case errors.Is(err, configstore.ErrNotFound):
			err = k.notFound()
		case errors.Is(err, configstore.ErrVersionConflict):
			err = changedSince(k.name)
		}
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// current returns the stored resource an update or delete applies to: 404
// when there is none, 412 when it does not meet the If-Match
// precondition. Call it under the resource's lock.
func (a *API) current(k kind, tenant, id string, pre precondition) (configstore.Document, error) {
	cur, ok := a.base.Config.Get(tenant, k.name, id)
	switch {
	case !ok:
		return cur, k.notFound()
	case !pre.holds(true, cur.Version):
		return cur, changedSince(k.name)
	}
	return cur, nil
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
	if doc.Kind == configstore.KindAPIKey {
		delete(res, "hash") // a key's hash stays in the configuration
	}
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
