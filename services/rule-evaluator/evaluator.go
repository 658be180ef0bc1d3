// Package ruleevaluator turns entity-change events into notifications.
//
// It consumes the events topic in a consumer group, decodes each event with
// its writer's schema into generic values, evaluates the tenant's rules that
// watch the event's entity type and operation, and writes one Notification
// per match to the notifications topic. Reading, evaluating and writing are
// one Kafka transaction per poll: the produced notifications and the
// consumed offsets commit together, so each (event, rule) yields exactly one
// committed notification, whose id is derived from both.
//
// Each event is judged by pkg/judge, which sorts failures by fault. An
// event that cannot be read, or on which a rule fails, goes to the events
// dead-letter topic with the reason and origin inside the same
// transaction, and the partition moves on; the world's faults (broker,
// registry, a rule still waiting to compile) abort the transaction, which
// is retried with a capped exponential backoff while /readyz says why.
package ruleevaluator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/rules"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/subscription"
	"github.com/heraldhq/herald/pkg/telemetry"
)

// Config is the rule evaluator's configuration.
type Config struct {
	service.Config
	// Group is the consumer group of the evaluator's replicas.
	Group string `env:"EVALUATOR_GROUP" envDefault:"herald-rule-evaluator"`
	// TransactionalID must be unique per replica and stable across its
	// restarts, so that a restarted replica fences its predecessor and
	// aborts its open transaction at once. Default: the group and the
	// host name (the pod name on Kubernetes). Session i > 0 adds "-i".
	TransactionalID string `env:"EVALUATOR_TRANSACTIONAL_ID"`
	// Sessions is how many transactional sessions the replica runs, each
	// a member of the group with its own partitions, so that one judges
	// while another waits for the broker to commit. A Config built in code
	// that leaves it 0 runs one.
	Sessions int `env:"EVALUATOR_SESSIONS" envDefault:"1"`
	// SessionTimeout is how long the group waits for a replica that stopped
	// answering before its partitions move to the others.
	SessionTimeout time.Duration `env:"EVALUATOR_SESSION_TIMEOUT" envDefault:"45s"`
	// MaxBatch bounds the events one transaction takes, so that a
	// transaction stays short and a restart redoes little. While events
	// wait, each transaction's round trips to the broker are shared by up
	// to this many: 10,000 is some 50 to 100 ms of judging with 10 rules on
	// two cores, near Kafka Streams' 100 ms commit interval under
	// exactly-once.
	MaxBatch int `env:"EVALUATOR_MAX_BATCH" envDefault:"10000"`
	// GatherWait is how long a poll that found events waits for those that
	// reached the broker behind them, so that they join the same
	// transaction; 0 takes only what the first fetch holds. About one
	// round trip to the broker.
	GatherWait time.Duration `env:"EVALUATOR_GATHER_WAIT" envDefault:"1ms"`
	// TimerHorizon bounds how long ago a timer an event sets may have been
	// due: one due longer ago is not set (a plan loaded years after its
	// end is not warned of it); one due less long ago fires at once.
	TimerHorizon time.Duration `env:"EVALUATOR_TIMER_HORIZON" envDefault:"24h"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Group == "" {
		return errors.New("HERALD_EVALUATOR_GROUP: required")
	}
	if c.Sessions < 1 {
		return errors.New("HERALD_EVALUATOR_SESSIONS: must be at least 1")
	}
	if c.MaxBatch < 1 {
		return errors.New("HERALD_EVALUATOR_MAX_BATCH: must be at least 1")
	}
	if c.GatherWait < 0 {
		return errors.New("HERALD_EVALUATOR_GATHER_WAIT: must not be negative")
	}
	if c.TimerHorizon < 0 {
		return errors.New("HERALD_EVALUATOR_TIMER_HORIZON: must not be negative")
	}
	if c.SessionTimeout < 6*time.Second {
		return errors.New("HERALD_EVALUATOR_SESSION_TIMEOUT: at least 6s, the broker's usual minimum")
	}
	return c.Config.Validate()
}

// Evaluator runs rules over events.
type Evaluator struct {
	base     *service.Base
	sessions []*session
	compiler *rules.Compiler
	index    *rules.Index
	subs     *subscription.Store
	judge    *judge.Judge
	maxBatch int
	// gatherWait: see Config.GatherWait.
	gatherWait time.Duration
	metrics    evaluatorMetrics
	stalled    httpapi.Condition
	// tracer is nil when tracing is off.
	tracer trace.Tracer
	lag    *kafka.Lag
	// now is the clock timers come due by.
	now func() time.Time

	mu sync.Mutex
	// pending holds rules that could not be compiled for a reason that may
	// pass (the registry unreachable); no event is judged until they are.
	pending map[string]configstore.Document
}

// New connects the evaluator.
func New(ctx context.Context, c Config) (*Evaluator, error) {
	base, err := service.Start(ctx, "rule-evaluator", c.Config)
	if err != nil {
		return nil, err
	}
	txid := c.TransactionalID
	if txid == "" {
		host, _ := os.Hostname()
		txid = c.Group + "-" + host
	}
	lag := kafka.NewLag(base.Metrics.Meter("herald/rule-evaluator"), c.Group)
	e := &Evaluator{base: base, compiler: rules.NewCompiler(rules.DefaultLimits), index: rules.NewIndex(), maxBatch: c.MaxBatch, gatherWait: c.GatherWait, pending: map[string]configstore.Document{},
		tracer: base.Tracer("herald/rule-evaluator"), lag: lag, now: time.Now}
	fail := func(err error) (*Evaluator, error) {
		for _, s := range e.sessions {
			s.close()
		}
		if e.subs != nil {
			e.subs.Close()
		}
		base.Close()
		return nil, err
	}
	for i := range max(c.Sessions, 1) {
		id := txid
		if i > 0 {
			id = fmt.Sprintf("%s-%d", txid, i)
		}
		s, err := newSession(e, c, id)
		if err != nil {
			return fail(err)
		}
		e.sessions = append(e.sessions, s)
	}
	subs, err := subscription.Open(base.KafkaOpts, base.Topics.Subscriptions, base.Log)
	if err != nil {
		return fail(err)
	}
	e.subs = subs
	e.judge = e.newJudge()
	e.judge.Horizon = c.TimerHorizon
	e.metrics = newEvaluatorMetrics(base.Metrics.Meter("herald/rule-evaluator"), e.pendingTimers)
	base.Config.OnApply(e.applyConfig)
	base.Health.AddCheck("kafka", func() error { return e.sessions[0].sess.Load().Client().Ping(context.Background()) })
	base.Health.AddCheck("transactions", e.stalled.Check)
	base.Health.AddCheck("subscriptions", func() error {
		if !subs.CaughtUp() {
			return errors.New("subscriptions not caught up")
		}
		return nil
	})
	return e, nil
}

// newJudge returns the judge of the evaluator's events: the evaluator's
// rule index, its tenants and subscriptions.
func (e *Evaluator) newJudge() *judge.Judge {
	return &judge.Judge{
		Registry:            e.base.Registry,
		NotificationSubject: e.base.NotificationSubject(),
		Rules:               e.index.Watching,
		TenantActive: func(tenant string) bool {
			_, ok := e.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, tenant)
			return ok
		},
		Destinations: e.subs.Destinations,
		TenantZone: func(tenant string) string {
			doc, ok := e.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, tenant)
			if !ok {
				return ""
			}
			return configstore.Spec[configstore.Tenant](doc).TimeZone
		},
		Rule: e.index.Rule,
		Now:  func() time.Time { return e.now() },
	}
}

// Run runs the evaluator until ctx ends.
func Run(ctx context.Context, c Config) error {
	e, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, e)
}

// Base returns what the service shares with every other.
func (e *Evaluator) Base() *service.Base { return e.base }

// Routes adds nothing: the evaluator serves health only.
func (e *Evaluator) Routes(*http.ServeMux) {}

// Close leaves the group and releases the clients.
func (e *Evaluator) Close() {
	for _, s := range e.sessions {
		s.close()
	}
	e.subs.Close()
	e.base.Close()
}

// Run follows the configuration and, once it has caught up, evaluates
// events until ctx ends.
func (e *Evaluator) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.base.FollowConfig(ctx) })
	g.Go(func() error { return e.subs.Run(ctx) })
	g.Go(func() error {
		// Rules and subscriptions must be loaded before the first event
		// is judged.
		if err := e.base.Config.WaitCaughtUp(ctx); err != nil {
			return nil
		}
		if err := e.subs.WaitCaughtUp(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		sg, ctx := errgroup.WithContext(ctx)
		for _, s := range e.sessions {
			sg.Go(func() error { return s.consume(ctx) })
		}
		return sg.Wait()
	})
	return g.Wait()
}

// applyConfig keeps the rule index in step with the configuration.
func (e *Evaluator) applyConfig(doc configstore.Document, deleted bool) {
	if doc.Kind != configstore.KindRule {
		return
	}
	e.mu.Lock()
	delete(e.pending, doc.Key())
	e.mu.Unlock()
	if deleted {
		e.index.Remove(doc.Tenant, doc.ID)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.load(ctx, doc); err != nil {
		e.base.Log.Warn("rule not compiled yet; events wait for it", "tenant", doc.Tenant, "rule", doc.ID, "err", err)
		e.mu.Lock()
		e.pending[doc.Key()] = doc
		e.mu.Unlock()
	}
}

// load compiles a rule against its entity types' schemas and indexes it. A
// rule that cannot compile is dropped from the index and logged; an error
// is returned only when trying again may succeed.
func (e *Evaluator) load(ctx context.Context, doc configstore.Document) error {
	spec := configstore.Spec[configstore.Rule](doc)
	var r *rules.Rule
	var err error
	// A rule may name a field of a version registered since the entity
	// was last fetched: try once more against the registry's current view.
	for _, fresh := range []bool{false, true} {
		var entities map[string]rules.Entity
		if entities, err = e.base.Entities(ctx, spec.On.EntityTypes, fresh); err != nil {
			break
		}
		if r, err = e.compiler.Compile(doc.Tenant, doc.ID, spec, entities); err == nil {
			e.index.Put(r)
			return nil
		}
	}
	var ce *rules.CompileError
	var se *rules.SpecError
	if errors.As(err, &ce) || errors.As(err, &se) || errors.Is(err, havro.ErrSubjectNotFound) {
		e.base.Log.Error("rule does not compile; not evaluated", "tenant", doc.Tenant, "rule", doc.ID, "err", err)
		e.index.Remove(doc.Tenant, doc.ID)
		return nil
	}
	return err
}

// loadPending compiles the rules that failed for a passing reason.
func (e *Evaluator) loadPending(ctx context.Context) error {
	e.mu.Lock()
	docs := make([]configstore.Document, 0, len(e.pending))
	for _, d := range e.pending {
		docs = append(docs, d)
	}
	e.mu.Unlock()
	for _, d := range docs {
		if err := e.load(ctx, d); err != nil {
			return fmt.Errorf("compile rule %s/%s: %w", d.Tenant, d.ID, err)
		}
		e.mu.Lock()
		if cur, ok := e.pending[d.Key()]; ok && cur.Version == d.Version {
			delete(e.pending, d.Key())
		}
		e.mu.Unlock()
	}
	return nil
}

// evaluatorMetrics counts what the evaluator commits and what it refuses.
type evaluatorMetrics struct {
	events, notifications, deadLetters, aborts, ruleFailures, sessions, timersFired metric.Int64Counter
	latency, timerLag                                                               metric.Float64Histogram
}

func newEvaluatorMetrics(m metric.Meter, pendingTimers func() int) evaluatorMetrics {
	// From a simple rule set (microseconds) to the cost limit's worst.
	latency, err := m.Float64Histogram("herald.evaluator.evaluation.duration",
		metric.WithDescription("How long judging one event took: decoding it and running its tenant's rules."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
	if err != nil {
		panic("metric herald.evaluator.evaluation.duration: " + err.Error())
	}
	timerLag, err := m.Float64Histogram("herald.timer.lag",
		metric.WithDescription("How long after its due time a timer fired, committed."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	if err != nil {
		panic("metric herald.timer.lag: " + err.Error())
	}
	if _, err := m.Int64ObservableGauge("herald.timers.pending",
		metric.WithDescription("Timers this replica holds that have not fired yet."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(pendingTimers()))
			return nil
		})); err != nil {
		panic("metric herald.timers.pending: " + err.Error())
	}
	return evaluatorMetrics{
		timerLag:      timerLag,
		timersFired:   telemetry.Counter(m, "herald.timers.fired", "Timers fired (judged and removed), committed."),
		events:        telemetry.Counter(m, "herald.evaluator.events", "Events judged in committed transactions."),
		notifications: telemetry.Counter(m, "herald.evaluator.notifications", "Notifications committed."),
		deadLetters:   telemetry.Counter(m, "herald.evaluator.dead_letters", "Events sent to the dead-letter topic, committed, by class (unreadable, rule_failed)."),
		aborts:        telemetry.Counter(m, "herald.evaluator.aborts", "Transactions aborted and retried: the world's fault (broker, registry, a rule still compiling), or rules that changed while the events were judged."),
		ruleFailures:  telemetry.Counter(m, "herald.evaluator.rule_failures", "Rules that failed on an event, by reason (error, cost_limit, encode, too_large); the rule did not fire."),
		sessions:      telemetry.Counter(m, "herald.evaluator.session_renewals", "Transactional sessions replaced because the broker fenced their producer."),
		latency:       latency,
	}
}
