package bootstrap

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/telemetry"
)

func config(t *testing.T) Config {
	t.Helper()
	var c Config
	if err := envconfig.Defaults(&c); err != nil {
		t.Fatal(err)
	}
	c.Telemetry = telemetry.Config{LogFormat: "text", LogLevel: "error"}
	c.Wait = 20 * time.Second
	return c
}

func TestValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown step", func(c *Config) { c.Steps = []string{"topics", "rules"} }, "HERALD_BOOTSTRAP_STEPS"},
		{"no step", func(c *Config) { c.Steps = nil }, "HERALD_BOOTSTRAP_STEPS"},
		{"tenant without token", func(c *Config) { c.AdminToken = "" }, "HERALD_ADMIN_TOKEN"},
		{"bad admin URL", func(c *Config) { c.AdminURL = "admin-api:8080" }, "HERALD_BOOTSTRAP_ADMIN_URL"},
		{"no brokers", func(c *Config) { c.Kafka.Brokers = nil }, "HERALD_KAFKA_BROKERS"},
		{"topics only needs no token", func(c *Config) { c.Steps, c.AdminToken = []string{"topics"}, "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config(t)
			c.AdminToken = "operator-token-0123456789"
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestTopicsStepCreatesTheServicesTopicsAndCanRunAgain(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	c := config(t)
	c.Steps = []string{StepTopics}
	c.Kafka.Brokers = cluster.ListenAddrs()
	c.Kafka.Partitions = 3
	for range 2 {
		if err := Run(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	names := c.Kafka.Topics()
	want := map[string]int{names.Events: 3, names.Notifications: 3, names.Config: 1, names.Deliveries: 3}
	for _, ch := range kafka.Channels {
		want[names.Retry(ch)], want[names.DLQ(ch)] = 3, 3
	}
	for name, partitions := range want {
		td, ok := topics[name]
		if !ok {
			t.Errorf("topic %s missing; have %v", name, topics.Names())
			continue
		}
		if len(td.Partitions) != partitions {
			t.Errorf("topic %s has %d partitions, want %d", name, len(td.Partitions), partitions)
		}
	}
	cfgs, err := adm.DescribeTopicConfigs(t.Context(), names.Config)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(names.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range rc.Configs {
		if kv.Key == "cleanup.policy" && kv.MaybeValue() != "compact" {
			t.Errorf("%s cleanup.policy = %q, want compact", names.Config, kv.MaybeValue())
		}
	}
}

// fakeAdmin answers the operator routes as the admin API does: 409 for a
// tenant id or a key already taken.
type fakeAdmin struct {
	mu       sync.Mutex
	notReady int // /readyz answers 503 this many times first
	tenants  map[string]bool
	keys     map[string]bool
	requests []string
}

func (f *fakeAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	f.requests = append(f.requests, r.Method+" "+r.URL.Path+" "+string(body))
	if r.URL.Path != "/readyz" && r.Header.Get("Authorization") != "Bearer operator-token-0123456789" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var req struct {
		ID     string         `json:"id"`
		Key    string         `json:"key"`
		Scopes []string       `json:"scopes"`
		APIKey map[string]any `json:"apiKey"`
	}
	_ = json.Unmarshal(body, &req)
	switch r.Method + " " + r.URL.Path {
	case "GET /readyz":
		if f.notReady > 0 {
			f.notReady--
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	case "POST /v1/tenants":
		key, _ := req.APIKey["key"].(string)
		if f.tenants[req.ID] || f.keys[key] {
			w.WriteHeader(http.StatusConflict)
			return
		}
		f.tenants[req.ID], f.keys[key] = true, true
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"` + req.ID + `","apiKey":{"key":"` + key + `"}}`))
	case "POST /v1/tenants/demo/api-keys":
		if len(req.Scopes) != 3 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if f.keys[req.Key] {
			w.WriteHeader(http.StatusConflict)
			return
		}
		f.keys[req.Key] = true
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestTenantStepWaitsForTheAdminAPIAndCanRunAgain(t *testing.T) {
	admin := &fakeAdmin{notReady: 2, tenants: map[string]bool{}, keys: map[string]bool{}}
	srv := httptest.NewServer(admin)
	defer srv.Close()
	c := config(t)
	c.Steps = []string{StepTenant}
	c.AdminURL = srv.URL
	c.AdminToken = "operator-token-0123456789"
	c.APIKey = "hk_demo"
	if err := Run(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if !admin.tenants["demo"] || !admin.keys["hk_demo"] {
		t.Fatalf("after the first run: tenants %v, keys %v; requests %q", admin.tenants, admin.keys, admin.requests)
	}
	if admin.notReady != 0 {
		t.Errorf("the tenant was created before /readyz answered 200")
	}
	// A second run, such as `docker compose up` again on kept data, finds
	// the tenant and the key and succeeds.
	if err := Run(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	// A new key for an existing tenant is added to it.
	c.APIKey = "hk_other"
	if err := Run(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if !admin.keys["hk_other"] {
		t.Errorf("the key was not added to the existing tenant; requests %q", admin.requests)
	}
}

func TestTenantStepFailsOnAWrongToken(t *testing.T) {
	srv := httptest.NewServer(&fakeAdmin{tenants: map[string]bool{}, keys: map[string]bool{}})
	defer srv.Close()
	c := config(t)
	c.Steps = []string{StepTenant}
	c.AdminURL = srv.URL
	c.AdminToken = "someone-elses-token-0000"
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, c); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Run() = %v, want the 401 named", err)
	}
}
