package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// TestAPIKeyLifecycle creates a key, uses it within its scopes, lists it
// without its secret and revokes it, which stops it at once.
func TestAPIKeyLifecycle(t *testing.T) {
	s := startAdmin(t)
	admin := s.tenant("acme")
	created := s.want(http.StatusCreated, "POST", "/v1/api-keys", admin, `{"name":"dashboard","scopes":["config:read"]}`)
	id, key := created.str("id"), created.str("key")
	if !strings.HasPrefix(id, "key_") || !strings.HasPrefix(key, "hk_") {
		t.Fatalf("created = %s", created.raw)
	}
	if got := created.header.Get("Location"); got != "/v1/api-keys/"+id {
		t.Errorf("Location = %q", got)
	}
	if created.str("prefix") != key[:7] {
		t.Errorf("prefix = %q, want %q", created.str("prefix"), key[:7])
	}

	// Stored hashed, never shown again.
	doc, ok := s.store.Get("acme", configstore.KindAPIKey, id)
	if !ok || strings.Contains(string(doc.Spec), key) {
		t.Fatalf("stored key %s: %s", id, doc.Spec)
	}
	hash := configstore.HashAPIKey(key)
	for _, path := range []string{"/v1/api-keys", "/v1/api-keys/" + id} {
		r := s.want(http.StatusOK, "GET", path, admin, "")
		if strings.Contains(r.raw, key) || strings.Contains(r.raw, hash) {
			t.Errorf("GET %s shows the key or its hash: %s", path, r.raw)
		}
		if !strings.Contains(r.raw, `"dashboard"`) {
			t.Errorf("GET %s does not show the key's name: %s", path, r.raw)
		}
	}

	// The key can do what its scopes allow, and nothing else.
	s.want(http.StatusOK, "GET", "/v1/destinations", key, "")
	s.want(http.StatusForbidden, "POST", "/v1/destinations", key, `{}`)
	s.want(http.StatusForbidden, "POST", "/v1/api-keys", key, `{"name":"x","scopes":["config:read"]}`)

	s.want(http.StatusPreconditionFailed, "DELETE", "/v1/api-keys/"+id, admin, "", "If-Match", `"7"`)
	s.want(http.StatusNoContent, "DELETE", "/v1/api-keys/"+id, admin, "")
	s.want(http.StatusUnauthorized, "GET", "/v1/destinations", key, "")
	s.want(http.StatusNotFound, "DELETE", "/v1/api-keys/"+id, admin, "")
	s.want(http.StatusOK, "GET", "/v1/destinations", admin, "")
}

func TestAKeyGivesOnlyScopesItHolds(t *testing.T) {
	s := startAdmin(t)
	admin := s.tenant("acme")
	writer := s.want(http.StatusCreated, "POST", "/v1/api-keys", admin, `{"name":"config","scopes":["config:read","config:write"]}`).str("key")
	r := s.want(http.StatusForbidden, "POST", "/v1/api-keys", writer, `{"name":"ingest","scopes":["config:read","events:write"]}`)
	if !slices.Contains(r.fields(), "scopes[1]") {
		t.Errorf("problem names %v, want scopes[1]", r.fields())
	}
	s.want(http.StatusCreated, "POST", "/v1/api-keys", writer, `{"name":"reader","scopes":["config:read"]}`)
}

func TestCreatingAKeyRefusesBadInput(t *testing.T) {
	s := startAdmin(t)
	admin := s.tenant("acme")
	for _, tc := range []struct{ name, body, field string }{
		{"no name", `{"scopes":["config:read"]}`, "name"},
		{"no scopes", `{"name":"k"}`, "scopes"},
		{"empty scopes", `{"name":"k","scopes":[]}`, "scopes"},
		{"unknown scope", `{"name":"k","scopes":["config:read","admin"]}`, "scopes[1]"},
		{"scope twice", `{"name":"k","scopes":["config:read","config:read"]}`, "scopes[1]"},
		{"a key of one's own", `{"name":"k","scopes":["config:read"],"key":"hk_mine_123"}`, "key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.want(http.StatusBadRequest, "POST", "/v1/api-keys", admin, tc.body)
			if !slices.Contains(r.fields(), tc.field) {
				t.Errorf("problem names %v, want %s", r.fields(), tc.field)
			}
		})
	}
}

func TestATenantHasAtMostAHundredKeys(t *testing.T) {
	s := startAdmin(t)
	admin := s.tenant("acme")
	for range 99 {
		s.want(http.StatusCreated, "POST", "/v1/api-keys", admin, `{"name":"k","scopes":["config:read"]}`)
	}
	s.want(http.StatusUnprocessableEntity, "POST", "/v1/api-keys", admin, `{"name":"k","scopes":["config:read"]}`)
}

// TestOperatorManagesATenantsKeys pins the operator's key routes: a key
// for a tenant that lost its own, one the operator brings, listing and
// revoking.
func TestOperatorManagesATenantsKeys(t *testing.T) {
	s := startAdmin(t)
	first := s.tenant("acme")
	brought := s.want(http.StatusCreated, "POST", "/v1/tenants/acme/api-keys", operatorToken,
		`{"name":"ci","scopes":["events:write"],"key":"hk_ci_0001"}`)
	if brought.str("key") != "hk_ci_0001" || brought.header.Get("Location") != "/v1/tenants/acme/api-keys/"+brought.str("id") {
		t.Fatalf("created = %s, Location %s", brought.raw, brought.header.Get("Location"))
	}
	generated := s.want(http.StatusCreated, "POST", "/v1/tenants/acme/api-keys", operatorToken, `{"name":"rescue","scopes":["config:read","config:write"]}`)
	s.want(http.StatusOK, "GET", "/v1/rules", generated.str("key"), "")

	s.want(http.StatusConflict, "POST", "/v1/tenants/acme/api-keys", operatorToken, `{"name":"again","scopes":["config:read"],"key":"hk_ci_0001"}`)
	s.want(http.StatusConflict, "POST", "/v1/tenants/acme/api-keys", operatorToken, `{"name":"theirs","scopes":["config:read"],"key":"`+first+`"}`)
	s.want(http.StatusNotFound, "POST", "/v1/tenants/nobody/api-keys", operatorToken, `{"name":"x","scopes":["config:read"]}`)
	s.want(http.StatusNotFound, "GET", "/v1/tenants/nobody/api-keys", operatorToken, "")

	list := s.want(http.StatusOK, "GET", "/v1/tenants/acme/api-keys", operatorToken, "")
	var names []string
	for _, it := range list.items() {
		n, _ := it["name"].(string)
		names = append(names, n)
		if _, ok := it["hash"]; ok {
			t.Errorf("key %v listed with its hash", it["id"])
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"ci", "initial", "rescue"}) {
		t.Errorf("keys = %v", names)
	}

	s.want(http.StatusNoContent, "DELETE", "/v1/tenants/acme/api-keys/"+brought.str("id"), operatorToken, "")
	s.want(http.StatusNotFound, "DELETE", "/v1/tenants/acme/api-keys/"+brought.str("id"), operatorToken, "")
	if _, ok := s.store.APIKeyByHash(configstore.HashAPIKey("hk_ci_0001")); ok {
		t.Error("the revoked key is still stored")
	}
}
