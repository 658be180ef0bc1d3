package adminapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
)

// The fuzz targets send arbitrary bodies to the JSON handlers: every answer
// must be a 2xx or a clear 4xx in JSON, never a 5xx, and no handler may
// panic. Their seed corpora are in testdata/fuzz; `make fuzz` (run by
// `make test`) fuzzes each for a while.

// fuzzStack is an admin API for a fuzz target: tenant fuzz, its key with
// every scope, and a resource of each kind to replace.
type fuzzStack struct {
	*adminStack
	key, destination, rule string
}

func startFuzz(f *testing.F) fuzzStack {
	s := startAdmin(f)
	key := s.tenant("fuzz")
	dest := s.destination(key, "fuzz")
	return fuzzStack{adminStack: s, key: key, destination: dest, rule: s.rule(key, "fuzz", dest)}
}

// route is one request a fuzz input is sent as: the body is the input.
type route struct {
	method, path string
	operator     bool
	header       []string
}

// check sends body on each route and fails on a 5xx or an answer that is
// not JSON. What a creation made is deleted again, so the tenant stays
// within its limits.
func (s fuzzStack) check(t *testing.T, body []byte, routes ...route) {
	ctx := context.Background()
	for _, rt := range routes {
		auth := s.key
		if rt.operator {
			auth = operatorToken
		}
		w := s.serve(ctx, rt.method, rt.path, auth, body, rt.header...)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q = %d %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		var res map[string]any
		if w.Body.Len() > 0 && json.Unmarshal(w.Body.Bytes(), &res) != nil {
			t.Fatalf("%s %s %q = %d, not a JSON object: %s", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code != http.StatusCreated {
			continue
		}
		loc := w.Header().Get("Location")
		if id, _ := res["id"].(string); loc == "" || id == "" {
			t.Fatalf("%s %s %q = 201 without Location or id: %s", rt.method, rt.path, body, w.Body)
		}
		if d := s.serve(ctx, http.MethodDelete, loc, auth, nil); d.Code != http.StatusNoContent {
			t.Fatalf("DELETE %s = %d %s", loc, d.Code, d.Body)
		}
	}
}

func FuzzRules(f *testing.F) {
	s := startFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.check(t, body,
			route{method: "POST", path: "/v1/rules"},
			route{method: "PUT", path: "/v1/rules/" + s.rule},
			route{method: "POST", path: "/v1/rules:validate"},
			route{method: "POST", path: "/v1/rules:test"},
			route{method: "POST", path: "/v1/catalog/USAGE_THRESHOLD:install"},
		)
	})
}

func FuzzDestinations(f *testing.F) {
	s := startFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.check(t, body,
			route{method: "POST", path: "/v1/destinations"},
			route{method: "PUT", path: "/v1/destinations/" + s.destination},
			route{method: "POST", path: "/v1/destinations/" + s.destination + ":rotate-secret"},
		)
	})
}

func FuzzTenants(f *testing.F) {
	s := startFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.check(t, body,
			route{method: "POST", path: "/v1/tenants", operator: true},
			route{method: "PATCH", path: "/v1/tenants/fuzz", operator: true, header: []string{"Content-Type", "application/merge-patch+json"}},
		)
	})
}

func FuzzAPIKeys(f *testing.F) {
	s := startFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.check(t, body,
			route{method: "POST", path: "/v1/api-keys"},
			route{method: "POST", path: "/v1/tenants/fuzz/api-keys", operator: true},
		)
	})
}
