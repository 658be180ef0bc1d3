package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/heraldhq/herald/pkg/httpapi"
	adminapi "github.com/heraldhq/herald/services/admin-api"
	"github.com/heraldhq/herald/services/ingest"
)

// loadCompose loads docker-compose.yml as `docker compose config` does,
// validated against the Compose specification's schema, with an empty
// environment so that the file's own defaults are what is checked.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, "docker-compose.yml")},
		cli.WithWorkingDirectory(abs), cli.WithEnv(nil), cli.WithConsistency(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// composeCommand returns the command deploy/Dockerfile builds for a
// compose service: its SERVICE build argument, or "" for a service that
// is not built from it.
func composeCommand(s types.ServiceConfig) string {
	if s.Build == nil || filepath.ToSlash(s.Build.Dockerfile) != "deploy/Dockerfile" {
		return ""
	}
	if cmd := s.Build.Args["CMD"]; cmd != nil && *cmd != "" {
		return "" // another command of the module, such as the receiver
	}
	if v := s.Build.Args["SERVICE"]; v != nil {
		return *v
	}
	return ""
}

// environment returns a compose service's environment as a map.
func environment(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

// httpPort returns the port of a Herald service's HERALD_HTTP_ADDR, or
// of the default (:8080) when it sets none.
func httpPort(t *testing.T, environment map[string]string) string {
	t.Helper()
	addr := environment["HERALD_HTTP_ADDR"]
	if addr == "" {
		addr = ":8080"
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("HERALD_HTTP_ADDR %q: %v", addr, err)
	}
	return port
}

func TestComposeHasEveryService(t *testing.T) {
	p := loadCompose(t)
	for _, name := range heraldServices(t) {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml has no service %s", name)
			continue
		}
		if got := composeCommand(s); got != name {
			t.Errorf("compose service %s builds %q from deploy/Dockerfile, want SERVICE=%s", name, got, name)
		}
	}
	for name, s := range p.Services {
		if cmd := composeCommand(s); cmd != "" {
			configOf(t, cmd) // fails for a deployed command without a module or a Config
		} else if s.Build == nil && (s.Image == "" || strings.HasSuffix(s.Image, ":latest") || !strings.Contains(s.Image, ":")) {
			t.Errorf("compose service %s: image %q, want a pinned tag", name, s.Image)
		}
	}
}

func TestComposeVariablesAreReadByTheServices(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		cmd := composeCommand(s)
		if cmd == "" {
			for k := range s.Environment {
				if strings.HasPrefix(k, "HERALD_") {
					t.Errorf("compose service %s is no Herald command but sets %s", name, k)
				}
			}
			continue
		}
		checkEnvironment(t, "compose service "+name, cmd, environment(s))
	}
}

// listenPorts returns the ports a compose service listens on inside its
// container: HERALD_HTTP_ADDR's for a Herald service, else those it
// exposes or publishes.
func listenPorts(t *testing.T, s types.ServiceConfig) []string {
	t.Helper()
	var ports []string
	if composeCommand(s) != "" && !isOneShot(s) {
		ports = append(ports, httpPort(t, environment(s)))
	}
	ports = append(ports, s.Expose...)
	for _, pc := range s.Ports {
		ports = append(ports, strconv.Itoa(int(pc.Target)))
	}
	return ports
}

func isOneShot(s types.ServiceConfig) bool { return s.Restart == "no" }

func TestComposePortsDoNotClash(t *testing.T) {
	p := loadCompose(t)
	// Published ports share the host; the ports each container listens on
	// are kept distinct too, so that the same environment runs every
	// service as a process on one host.
	published := map[string]string{}
	listening := map[string]string{}
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		for _, pc := range s.Ports {
			key := pc.HostIP + ":" + pc.Published
			if other, ok := published[key]; ok {
				t.Errorf("%s and %s both publish host port %s", other, name, key)
			}
			published[key] = name
			if pc.Published == "" {
				t.Errorf("%s publishes container port %d on a random host port; name one", name, pc.Target)
			}
		}
		for _, port := range slices.Compact(slices.Sorted(slices.Values(listenPorts(t, s)))) {
			if other, ok := listening[port]; ok {
				t.Errorf("%s and %s both listen on port %s", other, name, port)
			}
			listening[port] = name
		}
	}
	for key, name := range published {
		_, port, _ := strings.Cut(key, ":")
		if owner, ok := listening[port]; ok && owner != name {
			t.Errorf("%s publishes host port %s, on which %s listens", name, port, owner)
		}
	}
}

// servedRoutes returns a mux with the routes every Herald service serves
// beside its own, as service.Serve registers them.
func servedRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	(&httpapi.Health{}).Register(mux)
	mux.Handle("GET /metrics", http.NotFoundHandler())
	return mux
}

// serves reports whether mux has a route for GET path.
func serves(mux *http.ServeMux, path string) bool {
	_, pattern := mux.Handler(&http.Request{Method: http.MethodGet, Host: "x", URL: mustURL(path)})
	return pattern != ""
}

// healthcheckBinary is where deploy/Dockerfile installs herald-healthcheck.
const healthcheckBinary = "/usr/local/bin/herald-healthcheck"

func TestComposeHealthChecksHitRealRoutes(t *testing.T) {
	p := loadCompose(t)
	mux := servedRoutes()
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if composeCommand(s) == "" || isOneShot(s) {
			continue
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("compose service %s has no health check", name)
			continue
		}
		// CMD form: distroless images have no shell for CMD-SHELL.
		if len(hc.Test) != 3 || hc.Test[0] != "CMD" || hc.Test[1] != healthcheckBinary {
			t.Errorf("compose service %s: health check %q, want [CMD %s /path]", name, hc.Test, healthcheckBinary)
			continue
		}
		if path := hc.Test[2]; path != "/readyz" && path != "/healthz" || !serves(mux, path) {
			t.Errorf("compose service %s: health check asks for %s, which is not /readyz or /healthz of the service", name, path)
		}
	}
}

func TestComposeStartsInOrder(t *testing.T) {
	p := loadCompose(t)
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		for dep, d := range s.DependsOn {
			target := p.Services[dep]
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable {
					t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if !isOneShot(target) {
					t.Errorf("%s waits for %s to complete, which restarts (restart: %q)", name, dep, target.Restart)
				}
			}
		}
		if cmd := composeCommand(s); cmd != "" && cmd != "bootstrap" {
			for _, dep := range []string{"kafka", "schema-registry", "topics"} {
				if c := s.DependsOn[dep].Condition; c == "" || c == types.ServiceConditionStarted {
					t.Errorf("%s starts without waiting for %s (condition %q)", name, dep, c)
				}
			}
		}
	}
}

func TestComposeSeedsTheReadmeTenantThroughTheAdminAPI(t *testing.T) {
	p := loadCompose(t)
	var seeds int
	for name, s := range p.Services {
		e := environment(s)
		if composeCommand(s) != "bootstrap" || !strings.Contains(e["HERALD_BOOTSTRAP_STEPS"], "tenant") {
			continue
		}
		seeds++
		admin := p.Services["admin-api"]
		want := "http://admin-api:" + httpPort(t, environment(admin))
		if e["HERALD_BOOTSTRAP_ADMIN_URL"] != want {
			t.Errorf("%s: HERALD_BOOTSTRAP_ADMIN_URL = %q, want %q", name, e["HERALD_BOOTSTRAP_ADMIN_URL"], want)
		}
		if e["HERALD_ADMIN_TOKEN"] != environment(admin)["HERALD_ADMIN_TOKEN"] {
			t.Errorf("%s's operator token is not the admin API's", name)
		}
		if e["HERALD_BOOTSTRAP_TENANT"] != "demo" || e["HERALD_BOOTSTRAP_API_KEY"] != readmeKey(t) {
			t.Errorf("%s seeds tenant %q with key %q, want the README's demo tenant and key %q", name, e["HERALD_BOOTSTRAP_TENANT"], e["HERALD_BOOTSTRAP_API_KEY"], readmeKey(t))
		}
	}
	if seeds != 1 {
		t.Errorf("%d compose services create the demo tenant, want 1", seeds)
	}
}

// readmeKey returns the API key the README walkthrough uses (KEY=…).
func readmeKey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "KEY="); ok {
			return k
		}
	}
	t.Fatal("README.md has no KEY=… line")
	return ""
}

func TestPrometheusScrapesEveryService(t *testing.T) {
	p := loadCompose(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scraped[target] = true
			}
		}
	}
	if !serves(servedRoutes(), "/metrics") {
		t.Fatal("the services serve no /metrics")
	}
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if composeCommand(s) == "" || isOneShot(s) {
			continue
		}
		target := name + ":" + httpPort(t, environment(s))
		if !scraped[target] {
			t.Errorf("prometheus.yml does not scrape %s/metrics", target)
		}
		delete(scraped, target)
	}
	for target := range scraped {
		host, _, _ := strings.Cut(target, ":")
		if _, ok := p.Services[host]; !ok && host != "localhost" {
			t.Errorf("prometheus.yml scrapes %s, which is no compose service", target)
		}
	}
}

// caddyRoute is the part of a Caddy JSON route the proxy uses.
type caddyRoute struct {
	Match []struct {
		Path []string `json:"path"`
	} `json:"match"`
	Handle []struct {
		Handler   string `json:"handler"`
		Upstreams []struct {
			Dial string `json:"dial"`
		} `json:"upstreams"`
	} `json:"handle"`
	Terminal bool `json:"terminal"`
}

// upstream returns the address the first matching route proxies path to.
func upstream(routes []caddyRoute, path string) string {
	for _, r := range routes {
		if len(r.Match) > 0 && !slices.ContainsFunc(r.Match, func(m struct {
			Path []string `json:"path"`
		}) bool {
			return slices.ContainsFunc(m.Path, func(p string) bool { return caddyPathMatch(p, path) })
		}) {
			continue
		}
		for _, h := range r.Handle {
			if h.Handler == "reverse_proxy" && len(h.Upstreams) == 1 {
				return h.Upstreams[0].Dial
			}
		}
	}
	return ""
}

// caddyPathMatch is Caddy's path matcher for the forms it documents: an
// exact path, a prefix ending in *, a suffix starting with *, case
// insensitive.
func caddyPathMatch(pattern, path string) bool {
	pattern, path = strings.ToLower(pattern), strings.ToLower(path)
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(path, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == path
}

func TestProxySendsEachRouteToItsService(t *testing.T) {
	p := loadCompose(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy/caddy/caddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string     `json:"listen"`
					Routes []caddyRoute `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps.HTTP.Servers) != 1 {
		t.Fatalf("caddy.json has %d servers, want 1", len(cfg.Apps.HTTP.Servers))
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		proxy := p.Services["proxy"]
		if len(srv.Listen) != 1 || len(proxy.Ports) != 1 || srv.Listen[0] != fmt.Sprintf(":%d", proxy.Ports[0].Target) || proxy.Ports[0].Published != "8080" {
			t.Errorf("the proxy listens on %v and publishes %v, want localhost:8080 as in the README", srv.Listen, proxy.Ports)
		}
		want := map[string]string{}
		for _, name := range []string{"ingest", "admin-api"} {
			want[name] = name + ":" + httpPort(t, environment(p.Services[name]))
		}
		for pattern := range (&ingest.Ingest{}).RouteTable() {
			path := routePath(pattern)
			if got := upstream(srv.Routes, path); got != want["ingest"] {
				t.Errorf("the proxy sends %s to %q, want ingest at %s", path, got, want["ingest"])
			}
		}
		for _, r := range (&adminapi.API{}).RouteTable() {
			path := routePath(r.Pattern)
			if got := upstream(srv.Routes, path); got != want["admin-api"] {
				t.Errorf("the proxy sends %s to %q, want the admin API at %s", path, got, want["admin-api"])
			}
		}
	}
}

// routePath returns a path a mux pattern ("POST /v1/rules/{id}") matches.
func routePath(pattern string) string {
	_, path, _ := strings.Cut(pattern, " ")
	var b strings.Builder
	for seg := range strings.SplitSeq(path, "/") {
		if b.Len() > 0 || seg != "" {
			b.WriteString("/")
		}
		if strings.HasPrefix(seg, "{") {
			seg = "x"
		}
		b.WriteString(seg)
	}
	return b.String()
}
