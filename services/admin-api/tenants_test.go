package adminapi_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	adminapi "github.com/heraldhq/herald/services/admin-api"
)

func TestOperatorRoutesTakeOnlyTheOperatorToken(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	for _, tc := range []struct {
		name string
		auth string
		want int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"a wrong token", operatorToken + "x", http.StatusUnauthorized},
		{"a prefix of the token", operatorToken[:len(operatorToken)-1], http.StatusUnauthorized},
		{"a tenant's API key", key, http.StatusUnauthorized},
		{"the operator token", operatorToken, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do("GET", "/v1/tenants", tc.auth, "")
			if r.status != tc.want {
				t.Fatalf("GET /v1/tenants with %s = %d %s, want %d", tc.name, r.status, r.raw, tc.want)
			}
			if tc.want == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// The operator token is no API key: tenant routes refuse it.
	s.want(http.StatusUnauthorized, "GET", "/v1/rules", operatorToken, "")
}

func TestWithoutOperatorTokenOperatorRoutesAdmitNoOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), adminWait)
	defer cancel()
	var cfg adminapi.Config
	if err := envconfig.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Config = servicetest.Fakes(t, 1)
	api, err := adminapi.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Run(t, api)
	mux := http.NewServeMux()
	api.Routes(mux)
	s := &adminStack{t: t, api: api, mux: mux, store: api.Store()}
	for _, auth := range []string{"", "anything-at-all-long-enough"} {
		r := s.want(http.StatusUnauthorized, "POST", "/v1/tenants", auth, `{"name":"x"}`)
		if auth != "" && !strings.Contains(r.str("detail"), "no operator token") {
			t.Errorf("detail = %q, want it to say no operator token is configured", r.str("detail"))
		}
	}
}

func TestOperatorTokenConfiguration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	file, short, empty := write("token", operatorToken+"\n"), write("short", "abc\n"), write("empty", "\n")
	for _, tc := range []struct {
		name        string
		token, file string
		want        string
		wantErr     string // the variable the error names; "" for none
	}{
		{"none: operator routes off", "", "", "", ""},
		{"from the environment", operatorToken, "", operatorToken, ""},
		{"from a file, final newline dropped", "", file, operatorToken, ""},
		{"both", operatorToken, file, "", "HERALD_ADMIN_TOKEN, HERALD_ADMIN_TOKEN_FILE"},
		{"too short", "short", "", "", "HERALD_ADMIN_TOKEN: the token has fewer than 16"},
		{"file too short", "", short, "", "HERALD_ADMIN_TOKEN_FILE: the token has fewer than 16"},
		{"file empty", "", empty, "", "HERALD_ADMIN_TOKEN_FILE"},
		{"file missing", "", filepath.Join(dir, "none"), "", "HERALD_ADMIN_TOKEN_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := adminapi.Config{AdminToken: tc.token, AdminTokenFile: tc.file}
			got, err := cfg.OperatorToken()
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one starting %q", err, tc.wantErr)
				}
				if verr := cfg.Validate(); verr == nil {
					t.Error("Validate accepts it")
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("token = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestTenantLifecycle walks a tenant from creation to deletion: its first
// key shown once, renamed with If-Match, deleted with everything it owns,
// and its id usable again for a fresh, empty tenant.
func TestTenantLifecycle(t *testing.T) {
	s := startAdmin(t)
	created := s.want(http.StatusCreated, "POST", "/v1/tenants", operatorToken, `{"id":"acme","name":"Acme"}`)
	if got := created.header.Get("Location"); got != "/v1/tenants/acme" {
		t.Errorf("Location = %q", got)
	}
	apiKey, _ := created.body["apiKey"].(map[string]any)
	key, _ := apiKey["key"].(string)
	if !strings.HasPrefix(key, "hk_") || len(key) < 40 {
		t.Fatalf("first key = %q, want a generated hk_ key", key)
	}
	if scopes, _ := apiKey["scopes"].([]any); len(scopes) != 3 {
		t.Errorf("first key's scopes = %v, want all three", apiKey["scopes"])
	}
	if _, ok := apiKey["hash"]; ok {
		t.Error("the creation answer shows the key's hash")
	}

	got := s.want(http.StatusOK, "GET", "/v1/tenants/acme", operatorToken, "")
	if got.str("name") != "Acme" || got.header.Get("ETag") != `"1"` {
		t.Errorf("GET = %s, ETag %s", got.raw, got.header.Get("ETag"))
	}
	if strings.Contains(got.raw, key) || strings.Contains(got.raw, configstore.HashAPIKey(key)) {
		t.Error("GET shows the key or its hash")
	}

	// The key works for the tenant's own routes.
	dest := s.destination(key, "ops")
	s.rule(key, "low", dest)

	// Rename with the version read; a stale version is refused.
	renamed := s.want(http.StatusOK, "PATCH", "/v1/tenants/acme", operatorToken, `{"name":"Acme Corp"}`, "If-Match", `"1"`)
	if renamed.str("name") != "Acme Corp" || renamed.header.Get("ETag") != `"2"` {
		t.Errorf("PATCH = %s, ETag %s", renamed.raw, renamed.header.Get("ETag"))
	}
	s.want(http.StatusPreconditionFailed, "PATCH", "/v1/tenants/acme", operatorToken, `{"name":"Late"}`, "If-Match", `"1"`)
	s.want(http.StatusPreconditionFailed, "DELETE", "/v1/tenants/acme", operatorToken, "", "If-Match", `"1"`)
	for _, bad := range []struct{ body, field string }{
		{`{"name":null}`, "name"},
		{`{"name":""}`, "name"},
		{`{"id":"other"}`, "id"},
		{`{"name":7}`, "name"},
	} {
		r := s.want(http.StatusBadRequest, "PATCH", "/v1/tenants/acme", operatorToken, bad.body)
		if !slices.Contains(r.fields(), bad.field) {
			t.Errorf("PATCH %s: problem names %v, want %s", bad.body, r.fields(), bad.field)
		}
	}
	s.want(http.StatusNotFound, "PATCH", "/v1/tenants/nobody", operatorToken, `{"name":"x"}`)

	s.want(http.StatusNoContent, "DELETE", "/v1/tenants/acme", operatorToken, "", "If-Match", `"2"`)
	s.want(http.StatusUnauthorized, "GET", "/v1/rules", key, "")
	s.want(http.StatusNotFound, "GET", "/v1/tenants/acme", operatorToken, "")
	s.want(http.StatusNotFound, "DELETE", "/v1/tenants/acme", operatorToken, "")
	if left := s.store.ListTenant("acme"); len(left) != 0 {
		t.Errorf("after deletion the tenant still has %d documents, the first %s", len(left), left[0].Key())
	}

	// The id is free again, for a tenant that starts empty.
	key2 := s.tenant("acme")
	if rules := s.want(http.StatusOK, "GET", "/v1/rules", key2, "").items(); len(rules) != 0 {
		t.Errorf("the new tenant acme has %d rules from the old one", len(rules))
	}
	s.want(http.StatusUnauthorized, "GET", "/v1/rules", key, "")
}

// TestDeletingATenantAgainFinishesAnInterruptedDeletion pins that what a
// cut-short deletion left behind goes with the next DELETE, and never comes
// back to a new tenant of the same id.
func TestDeletingATenantAgainFinishesAnInterruptedDeletion(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	s.destination(key, "ops")
	// A deletion that stopped right after the tenant went.
	if err := s.store.Delete(t.Context(), configstore.OperatorTenant, configstore.KindTenant, "acme"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.store.ListTenant("acme")); n != 2 {
		t.Fatalf("acme has %d documents, want its key and destination", n)
	}
	s.want(http.StatusNoContent, "DELETE", "/v1/tenants/acme", operatorToken, "")
	if n := len(s.store.ListTenant("acme")); n != 0 {
		t.Fatalf("acme has %d documents after the second DELETE", n)
	}
}

func TestCreatingATenantRefusesBadInput(t *testing.T) {
	s := startAdmin(t)
	s.tenant("taken")
	other := s.want(http.StatusCreated, "POST", "/v1/tenants", operatorToken, `{"name":"Generated","apiKey":{"name":"ops","key":"hk_brought_by_operator"}}`)
	if id := other.str("id"); !strings.HasPrefix(id, "ten_") {
		t.Errorf("generated id = %q, want ten_…", id)
	}
	if k := other.body["apiKey"].(map[string]any); k["key"] != "hk_brought_by_operator" || k["name"] != "ops" {
		t.Errorf("first key = %v, want the one given, named ops", k)
	}
	s.want(http.StatusOK, "GET", "/v1/rules", "hk_brought_by_operator", "")
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"no name", `{"id":"x1"}`, http.StatusBadRequest, "name"},
		{"blank name", `{"id":"x1","name":"  "}`, http.StatusBadRequest, "name"},
		{"long name", `{"id":"x1","name":"` + strings.Repeat("n", 201) + `"}`, http.StatusBadRequest, "name"},
		{"id with a slash", `{"id":"a/b","name":"X"}`, http.StatusBadRequest, "id"},
		{"upper-case id", `{"id":"ACME","name":"X"}`, http.StatusBadRequest, "id"},
		{"operator's id", `{"id":"_","name":"X"}`, http.StatusBadRequest, "id"},
		{"id too long", `{"id":"` + strings.Repeat("a", 64) + `","name":"X"}`, http.StatusBadRequest, "id"},
		{"id taken", `{"id":"taken","name":"X"}`, http.StatusConflict, "id"},
		{"key too short", `{"id":"x1","name":"X","apiKey":{"key":"hk_1"}}`, http.StatusBadRequest, "apiKey.key"},
		{"key with a space", `{"id":"x1","name":"X","apiKey":{"key":"hk_12 345"}}`, http.StatusBadRequest, "apiKey.key"},
		{"key in use", `{"id":"x1","name":"X","apiKey":{"key":"hk_brought_by_operator"}}`, http.StatusConflict, "apiKey.key"},
		{"key name too long", `{"id":"x1","name":"X","apiKey":{"name":"` + strings.Repeat("n", 201) + `"}}`, http.StatusBadRequest, "apiKey.name"},
		{"first key with scopes", `{"id":"x1","name":"X","apiKey":{"scopes":["config:read"]}}`, http.StatusBadRequest, "scopes"},
		{"unknown field", `{"id":"x1","name":"X","plan":"gold"}`, http.StatusBadRequest, "plan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.want(tc.status, "POST", "/v1/tenants", operatorToken, tc.body)
			if !slices.Contains(r.fields(), tc.field) {
				t.Errorf("problem names %v, want %s", r.fields(), tc.field)
			}
		})
	}
	if _, ok := s.store.Get(configstore.OperatorTenant, configstore.KindTenant, "x1"); ok {
		t.Error("a refused creation stored tenant x1")
	}
	if n := len(s.store.ListTenant("x1")); n != 0 {
		t.Errorf("a refused creation left %d documents of x1", n)
	}
}

func TestTenantsAreListedInPages(t *testing.T) {
	s := startAdmin(t)
	var want []string
	for i := range 5 {
		id := "t" + strconv.Itoa(i)
		s.tenant(id)
		want = append(want, id)
	}
	var got []string
	path := "/v1/tenants?limit=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("more pages than tenants")
		}
		r := s.want(http.StatusOK, "GET", path, operatorToken, "")
		for _, it := range r.items() {
			id, _ := it["id"].(string)
			got = append(got, id)
		}
		path = nextLink(t, r)
	}
	if !slices.Equal(got, want) {
		t.Errorf("tenants over every page = %v, want %v", got, want)
	}
}

func TestMergePatchFollowsRFC7396(t *testing.T) {
	// The examples of RFC 7396, appendix A.
	for _, tc := range []struct{ doc, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	} {
		got, err := adminapi.MergePatch([]byte(tc.doc), []byte(tc.patch))
		if err != nil || string(got) != tc.want {
			t.Errorf("merge %s into %s = %s, %v; want %s", tc.patch, tc.doc, got, err, tc.want)
		}
	}
}

// nextLink returns the path of a list's next page from its Link header,
// checking it against nextCursor; "" on the last page.
func nextLink(t *testing.T, r reply) string {
	t.Helper()
	link, cursor := r.header.Get("Link"), r.str("nextCursor")
	if (link == "") != (cursor == "") {
		t.Fatalf("Link %q and nextCursor %q disagree", link, cursor)
	}
	if link == "" {
		return ""
	}
	path, ok := strings.CutSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
	if !ok || !strings.Contains(path, "cursor="+cursor) {
		t.Fatalf("Link = %q, want <…cursor=%s…>; rel=\"next\"", link, cursor)
	}
	return path
}

// TestTenantTimeZone pins the tenant's time zone: set by the operator or
// by the tenant itself, shown when read, refused unless an IANA name.
func TestTenantTimeZone(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("tz")
	if got := s.want(http.StatusOK, "GET", "/v1/settings", key, ""); got.str("timeZone") != "" || got.str("id") != "tz" {
		t.Errorf("GET /v1/settings before any is set = %s, want tenant tz without a zone (UTC)", got.raw)
	}

	set := s.want(http.StatusOK, "PATCH", "/v1/tenants/tz", operatorToken, `{"timeZone":"Europe/Madrid"}`)
	if set.str("timeZone") != "Europe/Madrid" || set.str("name") != "Tenant tz" {
		t.Errorf("operator PATCH = %s, want the zone set and the name kept", set.raw)
	}
	if got := s.want(http.StatusOK, "GET", "/v1/tenants/tz", operatorToken, ""); got.str("timeZone") != "Europe/Madrid" {
		t.Errorf("operator GET = %s, want timeZone Europe/Madrid", got.raw)
	}

	own := s.want(http.StatusOK, "PATCH", "/v1/settings", key, `{"timeZone":"America/New_York"}`, "If-Match", set.header.Get("ETag"))
	if own.str("timeZone") != "America/New_York" {
		t.Errorf("tenant PATCH = %s, want timeZone America/New_York", own.raw)
	}
	if got := s.want(http.StatusOK, "GET", "/v1/settings", key, ""); got.str("timeZone") != "America/New_York" {
		t.Errorf("GET /v1/settings = %s, want timeZone America/New_York", got.raw)
	}
	s.want(http.StatusPreconditionFailed, "PATCH", "/v1/settings", key, `{"timeZone":"UTC"}`, "If-Match", set.header.Get("ETag"))
	if back := s.want(http.StatusOK, "PATCH", "/v1/settings", key, `{"timeZone":null}`); back.str("timeZone") != "" {
		t.Errorf("removing the zone = %s, want none (UTC)", back.raw)
	}

	for _, bad := range []struct {
		path, auth, body, field string
	}{
		{"/v1/tenants/tz", operatorToken, `{"timeZone":"Europe/Nowhere"}`, "timeZone"},
		{"/v1/tenants/tz", operatorToken, `{"timeZone":"Local"}`, "timeZone"},
		{"/v1/tenants/tz", operatorToken, `{"timeZone":"+02:00"}`, "timeZone"},
		{"/v1/settings", key, `{"timeZone":"CEST"}`, "timeZone"},
		{"/v1/settings", key, `{"timeZone":3}`, "timeZone"},
		{"/v1/settings", key, `{"name":"Mine now"}`, "name"},
	} {
		r := s.want(http.StatusBadRequest, "PATCH", bad.path, bad.auth, bad.body)
		if !slices.Contains(r.fields(), bad.field) {
			t.Errorf("PATCH %s %s: problem names %v, want %s", bad.path, bad.body, r.fields(), bad.field)
		}
	}
	if got := s.want(http.StatusOK, "GET", "/v1/tenants/tz", operatorToken, ""); got.str("timeZone") != "" || got.str("name") != "Tenant tz" {
		t.Errorf("after refused patches the tenant is %s", got.raw)
	}
	reader := s.want(http.StatusCreated, "POST", "/v1/api-keys", key, `{"name":"ro","scopes":["config:read"]}`).str("key")
	s.want(http.StatusForbidden, "PATCH", "/v1/settings", reader, `{"timeZone":"UTC"}`)
	s.want(http.StatusOK, "GET", "/v1/settings", reader, "")
}
