package adminapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// Who may call a route, besides an API key's scope.
const (
	// AuthOperator routes take the operator token.
	AuthOperator = "operator"
)

// Route is one route of the admin API, as Routes registers it on the mux.
type Route struct {
	// Pattern is the http.ServeMux pattern: a method and a path.
	Pattern string
	// Auth is who may call it: AuthOperator, or the scope an API key
	// needs. It is empty for a handler registered without a guard, which
	// the isolation test refuses.
	Auth string
	// Kind is the document kind of the resource the route serves, for the
	// routes made from a kind; the path's {id}, if any, is one of its ids.
	Kind string

	handler http.Handler
}

// router collects the API's routes, so that Routes registers exactly what
// RouteTable lists.
type router struct{ routes []Route }

// Handle adds a route; h should come from one of the API's guards.
func (rt *router) Handle(pattern string, h http.Handler) { rt.HandleKind(pattern, "", h) }

// HandleKind adds a route that serves documents of kind.
func (rt *router) HandleKind(pattern, kind string, h http.Handler) {
	g, _ := h.(guarded)
	rt.routes = append(rt.routes, Route{Pattern: pattern, Auth: g.auth, Kind: kind, handler: h})
}

// kind adds a kind's create, list, get, replace and delete routes.
func (rt *router) kind(a *API, k kind, read, write func(http.HandlerFunc) http.Handler) {
	rt.HandleKind("POST /v1/"+k.plural, k.name, write(a.create(k)))
	rt.HandleKind("GET /v1/"+k.plural, k.name, read(a.list(k)))
	rt.HandleKind("GET /v1/"+k.plural+"/{id}", k.name, read(a.get(k)))
	rt.HandleKind("PUT /v1/"+k.plural+"/{id}", k.name, write(a.replace(k)))
	rt.HandleKind("DELETE /v1/"+k.plural+"/{id}", k.name, write(a.remove(k)))
}

// guarded is a handler behind the check its route needs.
type guarded struct {
	auth string
	h    http.Handler
}

func (g guarded) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.h.ServeHTTP(w, r) }

// scoped returns the guard of routes that take an API key with scope.
func (a *API) scoped(scope string) func(http.HandlerFunc) http.Handler {
	return func(h http.HandlerFunc) http.Handler {
		return guarded{auth: scope, h: a.loaded(httpapi.RequireKey(a.keys, scope, h))}
	}
}

// operatorOnly guards the routes that take the operator token.
func (a *API) operatorOnly(h http.HandlerFunc) http.Handler {
	return guarded{auth: AuthOperator, h: a.loaded(httpapi.RequireOperator(a.operator, h))}
}

// loaded answers 503 until the configuration view has caught up: before,
// a key, a tenant or a resource could be missing from it only for now.
func (a *API) loaded(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.base.Config.CaughtUp() {
			w.Header().Set("Retry-After", "1")
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusServiceUnavailable, "the configuration is still loading; retry"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tenantOf returns the tenant of the API key a request came with.
func tenantOf(r *http.Request) string { return httpapi.PrincipalFrom(r.Context()).Tenant }

// precondition is what a request's If-Match header asks of the stored
// resource (RFC 9110, 13.1.1): nothing when absent; that it exists, for
// "*"; else that its version is one of the strong entity-tags listed.
type precondition struct {
	given    bool
	any      bool
	versions []int64
}

// holds reports whether a resource that exists (or not) at version meets
// the precondition.
func (p precondition) holds(exists bool, version int64) bool {
	switch {
	case !p.given:
		return true
	case !exists:
		return false
	}
	return p.any || slices.Contains(p.versions, version)
}

// expect is the version a write or delete checks in the config topic's
// order, so that replicas racing on one resource agree: the version the
// request's precondition was checked against, or 0 (any) without one.
func (p precondition) expect(checked int64) int64 {
	if !p.given {
		return 0
	}
	return checked
}

// ifMatch reads a request's If-Match header. Weak tags (If-Match compares
// strongly) and tags that are not a version Herald gives out match
// nothing. A header that is not "*" or a list of entity-tags is a 400.
func ifMatch(r *http.Request) (precondition, error) {
	m := strings.TrimSpace(strings.Join(r.Header.Values("If-Match"), ","))
	switch m {
	case "":
		return precondition{}, nil
	case "*":
		return precondition{given: true, any: true}, nil
	}
	tags, ok := entityTags(m)
	if !ok {
		return precondition{}, httpapi.NewProblem(http.StatusBadRequest,
			`If-Match must be "*" or entity-tags, such as "3": the ETag the resource was read at, in double quotes`)
	}
	p := precondition{given: true}
	for _, t := range tags {
		v, err := strconv.ParseInt(t.opaque, 10, 64)
		if t.weak || err != nil || v < 1 || strconv.FormatInt(v, 10) != t.opaque {
			continue
		}
		p.versions = append(p.versions, v)
	}
	return p, nil
}

// entityTag is one element of an If-Match list.
type entityTag struct {
	weak   bool
	opaque string // without its double quotes
}

// entityTags parses an If-Match list of entity-tags (RFC 9110, sections
// 8.8.3 and 13.1.1). Empty list elements are skipped, as the list syntax
// allows; a list with no entity-tag is not one.
func entityTags(list string) ([]entityTag, bool) {
	var tags []entityTag
	for s := list; ; {
		s = strings.TrimLeft(s, " \t")
		switch {
		case s == "":
			return tags, len(tags) > 0
		case s[0] == ',':
			s = s[1:]
			continue
		}
		var t entityTag
		if t.weak = strings.HasPrefix(s, "W/"); t.weak {
			s = s[len("W/"):]
		}
		end := strings.IndexByte(s[min(1, len(s)):], '"')
		if !strings.HasPrefix(s, `"`) || end < 0 {
			return nil, false
		}
		t.opaque, s = s[1:1+end], strings.TrimLeft(s[2+end:], " \t")
		if strings.ContainsFunc(t.opaque, func(r rune) bool { return r < 0x21 || r == 0x7f }) || s != "" && s[0] != ',' {
			return nil, false
		}
		tags = append(tags, t)
	}
}

// changedSince is the answer to an update whose If-Match names a version
// that is no longer the stored one.
func changedSince(what string) *httpapi.Problem {
	return httpapi.NewProblem(http.StatusPreconditionFailed, "the "+what+" changed since it was read; read it again")
}

// keyLocks serialises the writes of each document within this process,
// so that an If-Match comparison and the write it guards are one step.
type keyLocks struct {
	mu   sync.Mutex
	held map[string]*keyLock
}

type keyLock struct {
	mu      sync.Mutex
	waiters int
}

// lock takes the lock of a document key and returns its release.
func (l *keyLocks) lock(tenant, kind, id string) (unlock func()) {
	key := configstore.Key(tenant, kind, id)
	l.mu.Lock()
	if l.held == nil {
		l.held = map[string]*keyLock{}
	}
	k := l.held[key]
	if k == nil {
		k = &keyLock{}
		l.held[key] = k
	}
	k.waiters++
	l.mu.Unlock()
	k.mu.Lock()
	return func() {
		k.mu.Unlock()
		l.mu.Lock()
		if k.waiters--; k.waiters == 0 {
			delete(l.held, key)
		}
		l.mu.Unlock()
	}
}
