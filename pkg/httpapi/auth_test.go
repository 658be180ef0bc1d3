package httpapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

func TestRequireKey(t *testing.T) {
	writer := httpapi.Principal{Tenant: "acme", KeyID: "k1", Scopes: []string{httpapi.ScopeEventsWrite, httpapi.ScopeConfigRead}}
	reader := httpapi.Principal{Tenant: "acme", KeyID: "k2", Scopes: []string{httpapi.ScopeConfigRead}}
	keys := map[string]httpapi.Principal{"hk_writer": writer, "hk_reader": reader}
	lookup := func(key string) (httpapi.Principal, bool) {
		p, ok := keys[key]
		return p, ok
	}

	tests := []struct {
		name          string
		authorization string // "" sends no header
		wantStatus    int
		wantPrincipal httpapi.Principal
	}{
		{"no header", "", http.StatusUnauthorized, httpapi.Principal{}},
		{"not a bearer token", "Basic aGs6d3JpdGVy", http.StatusUnauthorized, httpapi.Principal{}},
		{"empty bearer token", "Bearer ", http.StatusUnauthorized, httpapi.Principal{}},
		{"unknown key", "Bearer hk_nobody", http.StatusUnauthorized, httpapi.Principal{}},
		{"key without the scope", "Bearer hk_reader", http.StatusForbidden, httpapi.Principal{}},
		{"key with the scope", "Bearer hk_writer", http.StatusOK, writer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			var got httpapi.Principal
			h := httpapi.RequireKey(lookup, httpapi.ScopeEventsWrite, func(w http.ResponseWriter, r *http.Request) {
				called = true
				got = httpapi.PrincipalFrom(r.Context())
			})
			r := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
			if tt.authorization != "" {
				r.Header.Set("Authorization", tt.authorization)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)

			res := w.Result()
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				if called {
					t.Error("the handler ran for a refused request")
				}
				readProblem(t, res)
				if challenge := res.Header.Get("WWW-Authenticate"); (tt.wantStatus == http.StatusUnauthorized) != (challenge != "") {
					t.Errorf("WWW-Authenticate = %q on a %d", challenge, tt.wantStatus)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.wantPrincipal) {
				t.Errorf("handler saw principal %+v, want %+v", got, tt.wantPrincipal)
			}
		})
	}
}

// TestStoreKeysNeedTheKeyAndItsTenant pins that a key stops working when it
// is deleted or when its tenant is.
func TestStoreKeysNeedTheKeyAndItsTenant(t *testing.T) {
	store := configStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	put := func(tenant, kind, id string, spec any) {
		t.Helper()
		d, err := configstore.NewDocument(tenant, kind, id, spec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Put(ctx, d, 0); err != nil {
			t.Fatal(err)
		}
	}
	del := func(tenant, kind, id string) {
		t.Helper()
		if err := store.Delete(ctx, tenant, kind, id); err != nil {
			t.Fatal(err)
		}
	}
	lookup := httpapi.StoreKeys(store)
	check := func(step, key string, want *httpapi.Principal) {
		t.Helper()
		got, ok := lookup(key)
		if want == nil && ok {
			t.Errorf("%s: key %s is valid for %+v", step, key, got)
		}
		if want != nil && (!ok || !reflect.DeepEqual(got, *want)) {
			t.Errorf("%s: key %s = %+v (valid %v), want %+v", step, key, got, ok, *want)
		}
	}

	put(configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"})
	put("acme", configstore.KindAPIKey, "k1", configstore.APIKey{Name: "ci", Hash: configstore.HashAPIKey("hk_one"), Scopes: []string{httpapi.ScopeEventsWrite}})
	put("acme", configstore.KindAPIKey, "k2", configstore.APIKey{Name: "ops", Hash: configstore.HashAPIKey("hk_two"), Scopes: []string{httpapi.ScopeConfigRead}})
	check("stored", "hk_one", &httpapi.Principal{Tenant: "acme", KeyID: "k1", Scopes: []string{httpapi.ScopeEventsWrite}})
	check("stored", "hk_nope", nil)

	del("acme", configstore.KindAPIKey, "k1")
	check("key deleted", "hk_one", nil)
	check("key deleted", "hk_two", &httpapi.Principal{Tenant: "acme", KeyID: "k2", Scopes: []string{httpapi.ScopeConfigRead}})

	del(configstore.OperatorTenant, configstore.KindTenant, "acme")
	check("tenant deleted", "hk_two", nil)
}

// configStore returns a config store that follows a fresh topic on an
// in-memory broker until the test ends.
func configStore(t *testing.T) *configstore.Store {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	const topic = "herald.config"
	admin, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := kadm.NewClient(admin).CreateTopic(t.Context(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	s, err := configstore.Open(opts, topic, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
	})
	return s
}

func TestRequireOperator(t *testing.T) {
	const token = "op_0123456789abcdef"
	tests := []struct {
		name          string
		configured    string
		authorization string // "" sends no header
		wantStatus    int
	}{
		{"no header", token, "", http.StatusUnauthorized},
		{"not a bearer token", token, "Basic b3A6eA==", http.StatusUnauthorized},
		{"wrong token", token, "Bearer op_0123456789abcdeX", http.StatusUnauthorized},
		{"token with a suffix", token, "Bearer " + token + "0", http.StatusUnauthorized},
		{"prefix of the token", token, "Bearer " + token[:10], http.StatusUnauthorized},
		{"the token", token, "Bearer " + token, http.StatusOK},
		{"lower-case scheme", token, "bearer " + token, http.StatusOK},
		{"no token configured", "", "Bearer " + token, http.StatusUnauthorized},
		{"no token configured, empty bearer", "", "Bearer ", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *httpapi.Principal
			h := httpapi.RequireOperator(httpapi.NewOperatorToken(tt.configured), func(w http.ResponseWriter, r *http.Request) {
				p := httpapi.PrincipalFrom(r.Context())
				got = &p
			})
			r := httptest.NewRequest(http.MethodGet, "/v1/tenants", nil)
			if tt.authorization != "" {
				r.Header.Set("Authorization", tt.authorization)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			res := w.Result()
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				if got != nil {
					t.Error("the handler ran for a refused request")
				}
				readProblem(t, res)
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				return
			}
			if got == nil || !got.Operator || got.Tenant != "" {
				t.Errorf("handler saw principal %+v, want the operator, of no tenant", got)
			}
		})
	}
}
