package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

// Scopes lists every scope, in the order the API shows them.
var Scopes = []string{ScopeEventsWrite, ScopeConfigRead, ScopeConfigWrite}

// Principal is the caller an API key or the operator token identifies.
type Principal struct {
	Tenant string
	KeyID  string
	Scopes []string
	// Operator is set for the operator, who manages tenants and belongs
	// to none.
	Operator bool
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
		key, ok := bearer(r)
		if !ok {
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

// bearer returns the token of a request's "Authorization: Bearer" header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return token, strings.EqualFold(scheme, "Bearer") && token != ""
}

// OperatorToken is the secret that admits the operator. Only its SHA-256
// is kept; the zero value admits no one.
type OperatorToken struct {
	sum [sha256.Size]byte
	set bool
}

// NewOperatorToken returns the operator token token; an empty token admits
// no one.
func NewOperatorToken(token string) OperatorToken {
	if token == "" {
		return OperatorToken{}
	}
	return OperatorToken{sum: sha256.Sum256([]byte(token)), set: true}
}

// Matches reports whether presented is the token, in time that does not
// depend on where they differ. Comparing the digests also hides the
// token's length.
func (t OperatorToken) Matches(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 && t.set
}

// RequireOperator admits requests that present the operator token as a
// bearer token.
func RequireOperator(token OperatorToken, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald-operator"`)
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "the operator token is required: Authorization: Bearer <token>"))
			return
		}
		if !token.set {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald-operator"`)
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "operator routes are off: no operator token is configured"))
			return
		}
		if !token.Matches(presented) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald-operator", error="invalid_token"`)
			WriteProblem(w, NewProblem(http.StatusUnauthorized, "the operator token is not valid"))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, Principal{Operator: true})))
	})
}
