package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// registry is the embedded schema registry. With a data folder, every
// subject version it holds is saved to registry.json and seeded back at the
// next start with the same ids and versions.
type registry struct {
	*srfake.Registry
	file string
}

// savedSchema is one subject version as saved.
type savedSchema struct {
	Subject string    `json:"subject"`
	Version int       `json:"version"`
	ID      int       `json:"id"`
	Schema  sr.Schema `json:"schema"`
}

func openRegistry(dataDir string) (*registry, error) {
	r := &registry{Registry: srfake.NewRegistry()}
	if dataDir == "" {
		return r, nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("HERALD_DEV_DATA_DIR: %w", err)
	}
	r.file = filepath.Join(dataDir, "registry.json")
	b, err := os.ReadFile(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved schemas: %w", err)
	}
	var saved []savedSchema
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("read saved schemas %s: %w", r.file, err)
	}
	for _, s := range saved {
		r.SeedSchema(s.Subject, s.Version, s.ID, s.Schema)
	}
	return r, nil
}

// save writes every subject version to the data folder, if there is one.
func (r *registry) save(log *slog.Logger) {
	if r.file == "" {
		return
	}
	// Ask the registry's own handler in-process: the listener may be
	// closed already when the devstack shuts down.
	cl, err := sr.NewClient(sr.URLs("http://registry"), sr.HTTPClient(&http.Client{Transport: handlerTransport{r.Handler()}}))
	if err != nil {
		log.Error("save schemas", "err", err)
		return
	}
	all, err := cl.AllSchemas(context.Background())
	if err != nil {
		log.Error("save schemas", "err", err)
		return
	}
	saved := make([]savedSchema, 0, len(all))
	for _, ss := range all {
		saved = append(saved, savedSchema{Subject: ss.Subject, Version: ss.Version, ID: ss.ID, Schema: ss.Schema})
	}
	slices.SortFunc(saved, func(a, b savedSchema) int { return a.ID - b.ID })
	b, err := json.MarshalIndent(saved, "", "  ")
	if err == nil {
		err = os.WriteFile(r.file, b, 0o644)
	}
	if err != nil {
		log.Error("save schemas", "file", r.file, "err", err)
	}
}

// handlerTransport answers HTTP requests with a handler, in-process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}
