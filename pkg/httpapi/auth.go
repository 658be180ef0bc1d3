package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
)

// Scopes an API key can hold.
const (
	ScopeEventsWrite = "events:write"
	ScopeConfigRead  = "config:read"
	ScopeConfigWrite = "config:write"
)

// Principal is the caller an API key identifies.
type Principal struct {
	Tenant string
	KeyID  string
	Scopes []string
}

// KeyLookup finds the principal of a presented API key.
type KeyLookup func(key string) (Principal, bool)

type principalKey struct{}

// PrincipalFrom returns the authenticated caller of a request.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// RequireKey admits requests with a bearer API key that lookup knows and
// that holds scope.
func RequireKey(lookup KeyLookup, scope string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "an API key is required: Authorization: Bearer <key>"))
			return
		}
		p, ok := lookup(key)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald", error="invalid_token"`)
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "the API key is not valid"))
			return
		}
		if !slices.Contains(p.Scopes, scope) {
			WriteProblem(w, NewProblem(http.StatusForbidden, "the API key lacks the scope "+scope))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// StoreKeys looks API keys up in the configuration: a key is valid while its
// hash is stored and its tenant exists.
func StoreKeys(s *configstore.Store) KeyLookup {
	return func(key string) (Principal, bool) {
		doc, ok := s.APIKeyByHash(configstore.HashAPIKey(key))
		if !ok {
			return Principal{}, false
		}
		if _, ok := s.Get(configstore.OperatorTenant, configstore.KindTenant, doc.Tenant); !ok {
			return Principal{}, false
		}
		return Principal{Tenant: doc.Tenant, KeyID: doc.ID, Scopes: configstore.Spec[configstore.APIKey](doc).Scopes}, true
	}
}
