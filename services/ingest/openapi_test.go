package ingest_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/heraldhq/herald/pkg/apidoc"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/ingest"
)

// TestOpenAPIDocumentAgreesWithTheRoutes holds ingest's routes and
// /openapi.json to each other in both directions: every route has an
// operation for a key with events:write and a request body, and every
// operation the document gives ingest is a request the mux sends to the
// route of its pattern.
func TestOpenAPIDocumentAgreesWithTheRoutes(t *testing.T) {
	in, err := ingest.New(t.Context(), ingest.Config{Config: servicetest.Fakes(t, 1), MaxBatch: maxBatch})
	if err != nil {
		t.Fatalf("ingest.New: %v", err)
	}
	t.Cleanup(in.Close)
	mux := http.NewServeMux()
	in.Routes(mux)
	ops, err := apidoc.Operations()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]apidoc.Operation{}
	for _, o := range ops {
		if !o.Serves("ingest") {
			continue
		}
		documented[o.Pattern()] = o
		_, served := mux.Handler(httptest.NewRequest(o.Method, apidoc.SamplePath(o.Path), nil))
		if served != o.Pattern() {
			t.Errorf("%s %s: the mux sends it to %q, not %q", o.Method, o.Path, served, o.Pattern())
		}
	}
	routes := in.RouteTable()
	for pattern := range documented {
		if _, ok := routes[pattern]; !ok && pattern != "GET "+apidoc.Path {
			t.Errorf("%s: documented for ingest, but ingest has no such route", pattern)
		}
	}
	for pattern := range routes {
		o, ok := documented[pattern]
		switch {
		case !ok:
			t.Errorf("route %s: no operation in %s", pattern, apidoc.Path)
		case !slices.Equal(o.Security, []string{"apiKey:" + httpapi.ScopeEventsWrite}):
			t.Errorf("%s: security %v, the route takes a key with %s", pattern, o.Security, httpapi.ScopeEventsWrite)
		case !o.RequestBody:
			t.Errorf("%s: its handler decodes a JSON body; the document declares no requestBody", pattern)
		}
	}
}
