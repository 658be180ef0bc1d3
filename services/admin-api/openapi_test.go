package adminapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/apidoc"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// bodiless are the admin operations that change something without a
// request body; every other POST, PUT and PATCH decodes JSON and must
// declare its requestBody.
var bodiless = []string{
	"POST /v1/destinations/{id}:enable",
	"POST /v1/subscription-settings:rotate-secret",
}

// TestOpenAPIDocumentAgreesWithTheRoutes holds the route table and
// /openapi.json to each other in both directions: every route has an
// operation with the same method and path and the same security, and
// every operation the document gives the admin API is a request the mux
// sends to the route of the operation's pattern (apidoc.MuxPattern).
func TestOpenAPIDocumentAgreesWithTheRoutes(t *testing.T) {
	s := startAdmin(t)
	ops, err := apidoc.Operations()
	if err != nil {
		t.Fatal(err)
	}
	byPattern := map[string][]apidoc.Operation{}
	for _, o := range ops {
		if o.Serves("admin-api") {
			byPattern[o.Pattern()] = append(byPattern[o.Pattern()], o)
		}
	}
	routes := map[string]adminapi.Route{}
	for _, r := range s.api.RouteTable() {
		routes[r.Pattern] = r
		documented := byPattern[r.Pattern]
		if len(documented) == 0 {
			t.Errorf("route %s: no operation in %s", r.Pattern, apidoc.Path)
		}
		want := []string{"apiKey:" + r.Auth}
		if r.Auth == adminapi.AuthOperator {
			want = []string{"operatorToken"}
		}
		for _, o := range documented {
			if !slices.Equal(o.Security, want) {
				t.Errorf("%s %s: security %v, the route takes %v", o.Method, o.Path, o.Security, want)
			}
		}
	}
	for pattern, documented := range byPattern {
		for _, o := range documented {
			if _, ok := routes[pattern]; !ok && pattern != "GET "+apidoc.Path {
				t.Errorf("%s %s: documented, but the admin API has no route %s", o.Method, o.Path, pattern)
				continue
			}
			_, served := s.mux.Handler(httptest.NewRequest(o.Method, apidoc.SamplePath(o.Path), nil))
			if served != pattern {
				t.Errorf("%s %s: the mux sends it to %q, not %q", o.Method, o.Path, served, pattern)
			}
			op := o.Method + " " + o.Path
			switch takesNone := slices.Contains(bodiless, op); {
			case o.Method != http.MethodPost && o.Method != http.MethodPut && o.Method != http.MethodPatch:
				if o.RequestBody {
					t.Errorf("%s: a %s with a requestBody", op, o.Method)
				}
			case takesNone && o.RequestBody:
				t.Errorf("%s: its handler reads no body, but the document declares one", op)
			case !takesNone && !o.RequestBody:
				t.Errorf("%s: its handler decodes a JSON body; the document declares no requestBody", op)
			}
		}
	}
}

// TestOpenAPIDocumentIsServed answers GET /openapi.json with the document,
// without a key.
func TestOpenAPIDocumentIsServed(t *testing.T) {
	s := startAdmin(t)
	w := httptest.NewRecorder()
	s.mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, apidoc.Path, nil))
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); w.Code != http.StatusOK || err != nil || doc.OpenAPI == "" {
		t.Fatalf("GET %s: %d, openapi %q, %v", apidoc.Path, w.Code, doc.OpenAPI, err)
	}
}
