package deploytest

import (
	neturl "net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/heraldhq/herald/deploy/bootstrap"
	"github.com/heraldhq/herald/pkg/envconfig"
	adminapi "github.com/heraldhq/herald/services/admin-api"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
	"github.com/heraldhq/herald/services/ingest"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

// root is the repository's root, relative to this package.
const root = "../.."

// configs maps each command deployed from deploy/Dockerfile to its
// configuration type, whose env tags name the HERALD_* variables it reads.
var configs = map[string]envconfig.Validator{
	"ingest":             &ingest.Config{},
	"admin-api":          &adminapi.Config{},
	"rule-evaluator":     &ruleevaluator.Config{},
	"webhook-sender":     &webhooksender.Config{},
	"email-sender":       &emailsender.Config{},
	"eventbridge-sender": &eventbridgesender.Config{},
	"bootstrap":          &bootstrap.Config{},
}

// notDeployed are the modules of services/ that run no container of their
// own: the devstack is every service in one process.
var notDeployed = []string{"devstack"}

// heraldServices returns the services to deploy: every module in
// services/ but those notDeployed.
func heraldServices(t *testing.T) []string {
	t.Helper()
	mods, err := filepath.Glob(filepath.Join(root, "services", "*", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		if name := filepath.Base(filepath.Dir(m)); !slices.Contains(notDeployed, name) {
			names = append(names, name)
		}
	}
	if len(names) < 4 {
		t.Fatalf("found %d service modules in %s/services, want at least ingest, admin-api, rule-evaluator and webhook-sender", len(names), root)
	}
	return names
}

// configOf returns a new value of the configuration type of the command
// name, or nil, failing the test, when there is none: a deployed service
// is never skipped.
func configOf(t *testing.T, name string) envconfig.Validator {
	t.Helper()
	c, ok := configs[name]
	if !ok {
		if _, err := os.Stat(filepath.Join(root, "services", name, "go.mod")); err != nil {
			t.Errorf("%s is deployed, but services/%s has no module: its HERALD_* variables cannot be checked", name, name)
		} else {
			t.Errorf("services/%s has no entry in deploytest's configs: import its package and add its Config, so its HERALD_* variables are checked", name)
		}
		return nil
	}
	return reflect.New(reflect.TypeOf(c).Elem()).Interface().(envconfig.Validator)
}

// variables returns the HERALD_* variables the configuration of the
// command name reads, found by env itself, the library envconfig loads
// with, so nested structs and prefixes count as they do at start.
func variables(t *testing.T, name string) map[string]bool {
	t.Helper()
	cfg := configOf(t, name)
	if cfg == nil {
		return nil
	}
	params, err := env.GetFieldParamsWithOptions(cfg, env.Options{Prefix: envconfig.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, p := range params {
		if p.Key != "" && !p.Ignored {
			vars[p.Key] = true
		}
	}
	return vars
}

// checkEnvironment checks the environment where, a container or a
// process, gives the command name: every HERALD_* variable is one its
// Config reads, and the configuration it makes passes Validate, as at
// start. placeholders fill variables whose value comes from elsewhere (a
// Kubernetes Secret).
func checkEnvironment(t *testing.T, where, name string, environment map[string]string) {
	t.Helper()
	known := variables(t, name)
	if known == nil {
		return
	}
	for k := range environment {
		if strings.HasPrefix(k, envconfig.Prefix) && !known[k] {
			t.Errorf("%s sets %s, which %s's Config does not read", where, k, name)
		}
	}
	cfg := configOf(t, name)
	if err := parseEnv(cfg, environment); err != nil {
		t.Errorf("%s: %s cannot read its environment: %v", where, name, err)
		return
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: %s refuses its configuration: %v", where, name, err)
	}
}

// parseEnv fills cfg from environment alone, as envconfig.Load does from
// the process's environment.
func parseEnv(cfg any, environment map[string]string) error {
	return env.ParseWithOptions(cfg, env.Options{Prefix: envconfig.Prefix, Environment: environment})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestVariablesIncludeNestedConfig(t *testing.T) {
	// The collection itself: shared, nested and prefixed variables count.
	vars := variables(t, "webhook-sender")
	for _, v := range []string{"HERALD_KAFKA_BROKERS", "HERALD_HTTP_ADDR", "HERALD_SECRET_KEY", "HERALD_LOG_LEVEL", "HERALD_RETRY_SCHEDULE", "HERALD_WEBHOOK_PORTS", "HERALD_WEBHOOK_INSTANCE_ID"} {
		if !vars[v] {
			t.Errorf("webhook-sender's variables lack %s: %v", v, sortedKeys(vars))
		}
	}
	if vars["HERALD_INGEST_MAX_BATCH"] {
		t.Error("webhook-sender's variables include ingest's HERALD_INGEST_MAX_BATCH")
	}
}

func mustURL(path string) *neturl.URL {
	u, err := neturl.Parse(path)
	if err != nil {
		panic(err)
	}
	return u
}
