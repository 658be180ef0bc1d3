package apidoc_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/heraldhq/herald/pkg/apidoc"
)

// TestDocumentIsValidOpenAPI loads the document with kin-openapi and
// validates it against the OpenAPI 3 rules: references resolve, path
// parameters are declared, schemas are well formed.
func TestDocumentIsValidOpenAPI(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(apidoc.JSON())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("validate: %v", err)
	}
	ops, err := apidoc.Operations()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, item := range doc.Paths.Map() {
		n += len(item.Operations())
	}
	if n != len(ops) {
		t.Errorf("kin-openapi sees %d operations, Operations %d", n, len(ops))
	}
	for _, o := range ops {
		if len(o.Services) == 0 {
			t.Errorf("%s %s: no x-herald-services", o.Method, o.Path)
		}
		if len(o.Security) == 0 && o.Path != apidoc.Path {
			t.Errorf("%s %s: no security", o.Method, o.Path)
		}
	}
}

func TestMuxPattern(t *testing.T) {
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/v1/rules", "GET /v1/rules"},
		{"GET", "/v1/rules/{id}", "GET /v1/rules/{id}"},
		{"POST", "/v1/rules:validate", "POST /v1/rules:validate"},
		{"POST", "/v1/events:batch", "POST /v1/events:batch"},
		{"POST", "/v1/destinations/{id}:rotate-secret", "POST /v1/destinations/{action}"},
		{"POST", "/v1/catalog/{name}:install", "POST /v1/catalog/{action}"},
		{"GET", "/v1/destinations/{id}/secret", "GET /v1/destinations/{id}/secret"},
		{"PUT", "/v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}",
			"PUT /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}"},
	} {
		if got := apidoc.MuxPattern(c.method, c.path); got != c.want {
			t.Errorf("MuxPattern(%s, %s) = %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestSamplePath(t *testing.T) {
	for path, want := range map[string]string{
		"/v1/rules":                                "/v1/rules",
		"/v1/rules/{id}":                           "/v1/rules/xid",
		"/v1/catalog/{name}:install":               "/v1/catalog/xname:install",
		"/v1/accounts/{accountId}/contacts/{type}": "/v1/accounts/xaccountId/contacts/xtype",
	} {
		if got := apidoc.SamplePath(path); got != want {
			t.Errorf("SamplePath(%s) = %q, want %q", path, got, want)
		}
	}
}

// TestRegisterServesTheDocumentOnce serves the document and lets a second
// service on the same mux register without a conflict.
func TestRegisterServesTheDocumentOnce(t *testing.T) {
	mux := http.NewServeMux()
	apidoc.Register(mux)
	apidoc.Register(mux)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, apidoc.Path, nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || w.Body.String() != string(apidoc.JSON()) {
		t.Fatalf("GET %s: %d %s", apidoc.Path, w.Code, w.Header().Get("Content-Type"))
	}
}
