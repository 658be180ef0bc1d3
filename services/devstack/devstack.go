// Package devstack runs all of Herald in one process for local use: an
// embedded Kafka broker (franz-go's kfake, on a real port that any Kafka
// client can reach), an embedded schema registry (srfake), and the ingest,
// admin-api, rule-evaluator, webhook-sender, email-sender and
// eventbridge-sender services, each through the same New and Run as in
// production, talking only through Kafka topics, each configured from the
// same HERALD_* variables with the same defaults as when run on its own.
// The ingest and admin routes share one HTTP port. A demo tenant and its
// API key are created at start through the admin API's operator routes,
// as an operator would create any tenant.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/telemetry"
	adminapi "github.com/heraldhq/herald/services/admin-api"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
	"github.com/heraldhq/herald/services/ingest"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

// DevEgress returns the devstack's egress policy: webhooks may use plain
// HTTP, any port and loopback, so a receiver on the laptop works.
// Production configuration allows none of these.
func DevEgress() egress.Config {
	return egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"}
}

// DemoTenant is the id of the tenant the devstack creates.
const DemoTenant = "demo"

// Config is the devstack's configuration.
type Config struct {
	HTTPAddr     string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	KafkaAddr    string `env:"DEV_KAFKA_ADDR" envDefault:"127.0.0.1:9092"`
	RegistryAddr string `env:"DEV_REGISTRY_ADDR" envDefault:"127.0.0.1:8081"`
	// APIKey is the demo tenant's key; generated and printed when empty.
	APIKey string `env:"DEV_API_KEY"`
	// AdminToken is the operator token; generated and printed when empty.
	AdminToken string `env:"ADMIN_TOKEN"`
	// DataDir, when set, keeps events, configuration and schemas across
	// restarts; otherwise everything lives in memory.
	DataDir string `env:"DEV_DATA_DIR"`
	// SecretKey seals secrets in the config topic; made for the run (or
	// kept in DataDir) when empty.
	SecretKey  string `env:"SECRET_KEY"`
	Partitions int32  `env:"DEV_PARTITIONS" envDefault:"3"`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`

	// Ready, when set, is called once every service is running.
	Ready func(Stack) `env:"-"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	for name, addr := range map[string]string{"HERALD_HTTP_ADDR": c.HTTPAddr, "HERALD_DEV_KAFKA_ADDR": c.KafkaAddr, "HERALD_DEV_REGISTRY_ADDR": c.RegistryAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if c.Partitions < 1 {
		return errors.New("HERALD_DEV_PARTITIONS: must be at least 1")
	}
	return nil
}

// Stack tells where the running devstack can be reached.
type Stack struct {
	HTTPAddr     string
	KafkaAddr    string
	RegistryAddr string
	APIKey       string
	AdminToken   string
}

// Run runs the devstack until ctx ends.
func Run(ctx context.Context, c Config) error {
	root, err := telemetry.Logger(telemetry.Config{LogFormat: "text", LogLevel: c.LogLevel}, os.Stderr)
	if err != nil {
		return err
	}
	log := root.With("service", "devstack")
	listeners := map[string]net.Listener{}
	for name, addr := range map[string]string{"http": c.HTTPAddr, "kafka": c.KafkaAddr, "registry": c.RegistryAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen for %s on %s: %w", name, addr, err)
		}
		defer ln.Close()
		listeners[name] = ln
	}
	broker, err := startBroker(c, listeners["kafka"])
	if err != nil {
		return err
	}
	defer broker.Close()
	key, err := secretKey(c.SecretKey, c.DataDir)
	if err != nil {
		return err
	}
	reg, err := openRegistry(c.DataDir)
	if err != nil {
		return err
	}
	defer reg.save(log)

	stack := Stack{
		HTTPAddr:     listeners["http"].Addr().String(),
		KafkaAddr:    listeners["kafka"].Addr().String(),
		RegistryAddr: listeners["registry"].Addr().String(),
		AdminToken:   c.AdminToken,
	}
	if stack.AdminToken == "" {
		stack.AdminToken = newOperatorToken()
	}
	g, ctx := errgroup.WithContext(ctx)
	// The registry outlives the services: while they drain, a sender still
	// encodes the attempts it records.
	regCtx, stopRegistry := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRegistry()
	g.Go(func() error {
		return httpapi.Serve(regCtx, listeners["registry"], reg.Handler(), time.Second, log.With("component", "registry"))
	})
	g.Go(func() error {
		defer stopRegistry()
		return RunServices(ctx, Services{
			Common: service.Config{
				Kafka: kafka.Config{
					Brokers: []string{stack.KafkaAddr}, TopicPrefix: "herald.",
					Partitions: c.Partitions, ReplicationFactor: -1, CreateTopics: true,
				},
				Registry: service.RegistryConfig{URL: "http://" + stack.RegistryAddr, RegisterSchemas: true, LatestTTL: 5 * time.Second},
				Secrets:  configstore.KeyConfig{Key: key},
				Logger:   root,
			},
			HTTP:       listeners["http"],
			APIKey:     c.APIKey,
			AdminToken: stack.AdminToken,
			Ready: func(key string) {
				stack.APIKey = key
				reg.save(log)
				fmt.Fprintf(os.Stderr, "\n  Herald devstack is up.\n  HTTP API:  http://%s\n  Kafka:     %s\n  Registry:  http://%s\n  Tenant:    %s\n  API key:   %s\n  Operator:  %s\n\n",
					stack.HTTPAddr, stack.KafkaAddr, stack.RegistryAddr, DemoTenant, key, stack.AdminToken)
				if c.Ready != nil {
					c.Ready(stack)
				}
			},
		})
	})
	return g.Wait()
}

// Services says how RunServices reaches Kafka and the registry and where it
// serves HTTP.
type Services struct {
	// Common is every service's shared configuration; its Logger is the
	// root logger, and its topic prefix also prefixes consumer groups.
	Common service.Config
	// HTTP is where the ingest and admin routes are served.
	HTTP net.Listener
	// APIKey is the demo tenant's key; a new one when empty.
	APIKey string
	// AdminToken is the admin API's operator token, with which the demo
	// tenant is seeded; a new one when empty.
	AdminToken string
	// Ready is called with the demo tenant's key once everything runs.
	Ready func(apiKey string)
}

// RunServices runs ingest, admin-api, rule-evaluator and the webhook, email
// and EventBridge senders in this process, with the ingest and admin routes on one
// listener, and seeds the demo tenant through the operator routes. It
// returns when ctx ends or a service fails.
func RunServices(ctx context.Context, s Services) error {
	root := s.Common.Logger
	if s.AdminToken == "" {
		s.AdminToken = newOperatorToken()
	}
	if s.Common.Metrics == nil {
		m, err := telemetry.NewMetrics()
		if err != nil {
			return err
		}
		s.Common.Metrics = m
	}
	if s.Common.Tracing == nil {
		// One process, one service name: herald-devstack unless
		// OTEL_SERVICE_NAME says otherwise.
		tr, err := telemetry.NewTracing(ctx, "devstack")
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tr.Shutdown(sctx)
		}()
		s.Common.Tracing = tr
	}
	with := func(name string) service.Config {
		cc := s.Common
		cc.Logger = root.With("service", name)
		// Every service's routes are on the one listener.
		cc.HTTPAddr = s.HTTP.Addr().String()
		return cc
	}
	var comps []service.Component
	defer func() {
		for _, c := range comps {
			c.Close()
		}
	}()
	cfgs, err := serviceConfigs(s, with)
	if err != nil {
		return err
	}
	in, err := ingest.New(ctx, cfgs.ingest)
	if err != nil {
		return err
	}
	comps = append(comps, in)
	api, err := adminapi.New(ctx, cfgs.admin)
	if err != nil {
		return err
	}
	comps = append(comps, api)
	ev, err := ruleevaluator.New(ctx, cfgs.evaluator)
	if err != nil {
		return err
	}
	comps = append(comps, ev)
	ws, err := webhooksender.New(ctx, cfgs.webhook)
	if err != nil {
		return err
	}
	comps = append(comps, ws)
	es, err := emailsender.New(ctx, cfgs.email)
	if err != nil {
		return err
	}
	comps = append(comps, es)
	ebs, err := eventbridgesender.New(ctx, cfgs.eventbridge)
	if err != nil {
		return err
	}
	comps = append(comps, ebs)

	g, ctx := errgroup.WithContext(ctx)
	health := &httpapi.Health{}
	mux := http.NewServeMux()
	health.Register(mux)
	mux.Handle("GET /metrics", s.Common.Metrics.Handler())
	for _, comp := range comps {
		comp.Routes(mux)
		name := comp.Base().Name
		health.AddCheck(name, comp.Base().Health.Err)
		g.Go(func() error {
			if err := comp.Run(ctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		return httpapi.Serve(ctx, s.HTTP, s.Common.Tracing.Handler(mux), 5*time.Second, root.With("component", "http"))
	})
	g.Go(func() error {
		if err := api.Store().WaitCaughtUp(ctx); err != nil {
			return fmt.Errorf("seed demo tenant: %w", err)
		}
		key, err := seedDemo(ctx, newOperator(s.HTTP, s.AdminToken), s.APIKey)
		if err != nil {
			return fmt.Errorf("seed demo tenant (HERALD_DEV_API_KEY): %w", err)
		}
		// Ready means the key works everywhere: every service's view
		// holds it, not only the admin API's.
		for _, comp := range comps {
			if err := comp.Base().Config.WaitCaughtUp(ctx); err != nil {
				return fmt.Errorf("seed demo tenant: %w", err)
			}
		}
		root.Info("devstack ready", "http", "http://"+s.HTTP.Addr().String(), "tenant", DemoTenant)
		if s.Ready != nil {
			s.Ready(key)
		}
		return nil
	})
	return g.Wait()
}

func startBroker(c Config, ln net.Listener) (*kfake.Cluster, error) {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("herald-devstack"),
		// Hand kfake the listener opened above, so the address is the one
		// configured and is taken before any service starts.
		kfake.ListenFn(func(string, string) (net.Listener, error) { return ln, nil }),
	}
	if c.DataDir != "" {
		opts = append(opts, kfake.DataDir(filepath.Join(c.DataDir, "kafka")))
	}
	cl, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	return cl, nil
}

// configs are the services' configurations in the devstack.
type configs struct {
	ingest      ingest.Config
	admin       adminapi.Config
	evaluator   ruleevaluator.Config
	webhook     webhooksender.Config
	email       emailsender.Config
	eventbridge eventbridgesender.Config
}

// serviceConfigs reads each service's configuration from the same HERALD_*
// variables, with the same defaults, as the service run on its own (group
// names included, so that a standalone replica shares the devstack's
// work), then sets what makes the devstack one process, and only that:
// the shared Kafka, registry and secrets of Common (the embedded broker
// and registry), one HTTP listener, loopback and plain HTTP egress for
// receivers on the laptop, and plaintext SMTP for a local mail catcher.
func serviceConfigs(s Services, with func(name string) service.Config) (configs, error) {
	var c configs
	for _, cfg := range []any{&c.ingest, &c.admin, &c.evaluator, &c.webhook, &c.email, &c.eventbridge} {
		if err := envconfig.Parse(cfg); err != nil {
			return c, err
		}
	}
	c.ingest.Config = with("ingest")
	c.admin.Config, c.admin.Egress, c.admin.AdminToken = with("admin-api"), DevEgress(), s.AdminToken
	c.evaluator.Config = with("rule-evaluator")
	c.webhook.Config, c.webhook.Egress = with("webhook-sender"), DevEgress()
	c.email.Config, c.email.Egress, c.email.Ports, c.email.AllowPlaintext = with("email-sender"), DevEgress(), "any", true
	c.eventbridge.Config = with("eventbridge-sender")
	for name, v := range map[string]envconfig.Validator{
		"ingest": c.ingest, "admin-api": c.admin, "rule-evaluator": c.evaluator, "webhook-sender": c.webhook, "email-sender": c.email,
		"eventbridge-sender": c.eventbridge,
	} {
		if err := v.Validate(); err != nil {
			return c, fmt.Errorf("%s: %w", name, err)
		}
	}
	return c, nil
}
