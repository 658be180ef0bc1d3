package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	"github.com/heraldhq/herald/services/ingest"
)

// FuzzEvents posts arbitrary bodies as an event and as a batch: every
// answer is a 202 or a clear 4xx in JSON, never a 5xx, and no panic. The
// seed corpus is in testdata/fuzz/FuzzEvents.
func FuzzEvents(f *testing.F) {
	ctx, cancel := context.WithTimeout(f.Context(), waitFor)
	defer cancel()
	in, err := ingest.New(ctx, ingest.Config{Config: servicetest.Fakes(f, 3), MaxBatch: maxBatch})
	if err != nil {
		f.Fatalf("ingest.New: %v", err)
	}
	servicetest.Run(f, in)
	store := in.Base().Config
	hash := configstore.HashAPIKey(acmeKey)
	for _, d := range []struct {
		tenant, kind, id string
		spec             any
	}{
		{configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"}},
		{"acme", configstore.KindAPIKey, "key_fuzz", configstore.APIKey{Name: "fuzz", Hash: hash, Prefix: acmeKey[:7], Scopes: []string{httpapi.ScopeEventsWrite}}},
	} {
		doc, err := configstore.NewDocument(d.tenant, d.kind, d.id, d.spec)
		if err == nil {
			_, err = store.Put(ctx, doc, 0)
		}
		if err != nil {
			f.Fatalf("seed %s: %v", d.kind, err)
		}
	}
	mux := http.NewServeMux()
	in.Routes(mux)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/v1/events", "/v1/events:batch"} {
			req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+acmeKey)
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("POST %s %q = %d %s", path, body, w.Code, w.Body)
			}
			var res map[string]any
			if json.Unmarshal(w.Body.Bytes(), &res) != nil {
				t.Fatalf("POST %s %q = %d, not a JSON object: %s", path, body, w.Code, w.Body)
			}
		}
	})
}
