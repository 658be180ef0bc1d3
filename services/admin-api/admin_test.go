package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

// operatorToken is the operator token of every admin API the tests start.
const operatorToken = "op_test_0123456789abcdef"

// adminWait bounds every wait in these tests.
const adminWait = 20 * time.Second

// adminStack is an admin API on its own kfake cluster and fake registry,
// with the operator token set, its routes on a mux the tests call.
type adminStack struct {
	t     testing.TB
	api   *adminapi.API
	cfg   service.Config
	store *configstore.Store
	mux   *http.ServeMux
}

func startAdmin(t testing.TB) *adminStack {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), adminWait)
	defer cancel()
	var cfg adminapi.Config
	if err := envconfig.Defaults(&cfg); err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	cfg.Config = servicetest.Fakes(t, 1)
	cfg.AdminToken = operatorToken
	api, err := adminapi.New(ctx, cfg)
	if err != nil {
		t.Fatalf("adminapi.New: %v", err)
	}
	servicetest.Run(t, api)
	mux := http.NewServeMux()
	api.Routes(mux)
	return &adminStack{t: t, api: api, cfg: cfg.Config, store: api.Store(), mux: mux}
}

// reply is an answer of the admin API.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// fields returns the field paths a problem names.
func (r reply) fields() []string {
	var out []string
	errs, _ := r.body["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		out = append(out, f)
	}
	return out
}

// str returns a string field of the body.
func (r reply) str(name string) string {
	s, _ := r.body[name].(string)
	return s
}

// items returns the items of a list.
func (r reply) items() []map[string]any {
	var out []map[string]any
	list, _ := r.body["items"].([]any)
	for _, it := range list {
		m, _ := it.(map[string]any)
		out = append(out, m)
	}
	return out
}

// serve sends a request with a bearer token (none when auth is empty) and
// extra headers as name, value pairs, straight to the routes.
func (s *adminStack) serve(ctx context.Context, method, path, auth string, body []byte, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.mux.ServeHTTP(w, req)
	return w
}

// do is serve for a test: the answer decoded.
func (s *adminStack) do(method, path, auth, body string, header ...string) reply {
	s.t.Helper()
	w := s.serve(s.t.Context(), method, path, auth, []byte(body), header...)
	res := reply{status: w.Code, header: w.Header(), raw: w.Body.String()}
	if res.raw != "" {
		if err := json.Unmarshal(w.Body.Bytes(), &res.body); err != nil {
			s.t.Fatalf("%s %s: answer is not a JSON object: %s", method, path, res.raw)
		}
	}
	return res
}

// want sends a request and fails the test unless it answers status.
func (s *adminStack) want(status int, method, path, auth, body string, header ...string) reply {
	s.t.Helper()
	r := s.do(method, path, auth, body, header...)
	if r.status != status {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.raw, status)
	}
	return r
}

// tenant creates a tenant through the operator route and returns its
// first API key.
func (s *adminStack) tenant(id string) string {
	s.t.Helper()
	r := s.want(http.StatusCreated, "POST", "/v1/tenants", operatorToken, `{"id":"`+id+`","name":"Tenant `+id+`"}`)
	key, _ := r.body["apiKey"].(map[string]any)["key"].(string)
	if key == "" {
		s.t.Fatalf("tenant %s created without its first key: %s", id, r.raw)
	}
	return key
}

// destination creates a webhook destination and returns its id.
func (s *adminStack) destination(key, name string) string {
	s.t.Helper()
	r := s.want(http.StatusCreated, "POST", "/v1/destinations", key,
		`{"type":"webhook","name":"`+name+`","webhook":{"url":"https://hooks.example.com/`+name+`"}}`)
	return r.str("id")
}

// rule creates a rule on Balance updates that sends to dest and returns
// its id.
func (s *adminStack) rule(key, name, dest string) string {
	s.t.Helper()
	r := s.want(http.StatusCreated, "POST", "/v1/rules", key, ruleBody(name, dest))
	return r.str("id")
}

func ruleBody(name, dest string) string {
	dests := "[]"
	if dest != "" {
		dests = `["` + dest + `"]`
	}
	return `{"name":"` + name + `","on":{"entityTypes":["Balance"],"operations":["UPDATE"]},` +
		`"when":"new.remaining < old.remaining","notification":{"name":"UnitAllowanceThreshold","state":"low"},"destinations":` + dests + `}`
}
