package ruleevaluator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

// cluster is a prefix's worth of Herald topics on the real broker, with a
// registry holding Herald's schemas.
type cluster struct {
	cfg kafka.Config
	reg *havro.Registry
	url string
	cl  *kgo.Client
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cfg := kafka.Config{Brokers: kafkatest.Brokers(t), TopicPrefix: kafkatest.Prefix(t), Partitions: 4, ReplicationFactor: 1, CreateTopics: true}
	fake := srfake.New()
	t.Cleanup(fake.Close)
	src, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cfg: cfg, reg: havro.NewRegistry(src, time.Minute), url: fake.URL()}
	if c.cl, err = kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cl.Close)
	if err := kafka.EnsureTopics(t.Context(), c.cl, cfg); err != nil {
		t.Fatal(err)
	}
	if err := service.RegisterSchemas(t.Context(), c.reg, cfg.Topics()); err != nil {
		t.Fatal(err)
	}
	return c
}

// put writes configuration documents through a config view of its own.
func (c *cluster) put(t *testing.T, docs ...configstore.Document) {
	t.Helper()
	store, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(c.cfg.Brokers...)}, c.cfg.Topics().Config, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go store.Run(ctx)
	for _, d := range docs {
		if _, err := store.Put(ctx, d, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func doc(t *testing.T, tenant, kind, id string, spec any) configstore.Document {
	t.Helper()
	d, err := configstore.NewDocument(tenant, kind, id, spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// balanceEvent returns the i-th sample event: a balance whose remaining
// allowance drops by 10 from 1000 - 10*(i%100).
func balanceEvent(i int) *event.Event {
	remaining := float64(1000 - 10*(i%100))
	img := func(rem float64) map[string]any {
		return map[string]any{"id": fmt.Sprintf("bal-%d", i%250), "accountId": fmt.Sprintf("acct-%d", i%250), "unit": "MB", "total": 1000.0, "used": 1000 - rem, "remaining": rem}
	}
	acct := fmt.Sprintf("acct-%d", i%250)
	return &event.Event{
		EventID: fmt.Sprintf("evt-%05d", i), EntityType: "Balance", EntityID: fmt.Sprintf("bal-%d", i%250), Operation: "UPDATE",
		AccountID: &acct, Old: img(remaining), New: img(remaining - 10),
	}
}

// startEvaluator runs the rule evaluator as its own process.
func startEvaluator(t *testing.T, bin string, c *cluster, txid string) *servicetest.Process {
	t.Helper()
	return servicetest.StartProcess(t, bin, []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(c.cfg.Brokers, ","),
		"HERALD_KAFKA_TOPIC_PREFIX=" + c.cfg.TopicPrefix,
		"HERALD_KAFKA_CREATE_TOPICS=false",
		"HERALD_REGISTRY_URL=" + c.url,
		"HERALD_REGISTRY_REGISTER_SCHEMAS=false",
		"HERALD_HTTP_ADDR=127.0.0.1:0",
		"HERALD_LOG_LEVEL=error",
		"HERALD_EVALUATOR_GROUP=" + c.cfg.TopicPrefix + "evaluator",
		"HERALD_EVALUATOR_TRANSACTIONAL_ID=" + txid,
		"HERALD_EVALUATOR_SESSION_TIMEOUT=6s",
		// Small transactions, so that a kill lands between and inside them.
		"HERALD_EVALUATOR_MAX_BATCH=200",
	})
}

// TestExactlyOnceThroughEvaluatorKills has the evaluator, a real process,
// work through 20,000 events while it is killed with SIGKILL three times.
// The committed notifications must be exactly one per firing event, and the
// unreadable records must each reach the dead-letter topic once.
func TestExactlyOnceThroughEvaluatorKills(t *testing.T) {
	c := newCluster(t)
	bin := servicetest.Build(t, "./cmd/rule-evaluator")
	const (
		tenant = "acme"
		ruleID = "rul_low"
		events = 20000
	)
	c.put(t,
		doc(t, configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: "Acme"}),
		doc(t, tenant, configstore.KindRule, ruleID, configstore.Rule{
			Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         "crossedBelow(old.remaining, new.remaining, 500)",
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		}),
	)

	// Every event whose remaining goes from 500 to 490 fires: i%100 == 50.
	want := map[string]bool{}
	var recs []*kgo.Record
	for i := range events {
		e := balanceEvent(i)
		key, value, err := event.Encode(t.Context(), c.reg, c.cfg.Topics().Events, tenant, e, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: c.cfg.Topics().Events, Key: key, Value: value})
		if i%100 == 50 {
			want[notification.ID(tenant, e.EventID, ruleID)] = true
		}
	}
	bad := map[string][]byte{
		"bad magic byte":    {1, 0, 0, 0, 1, 2},
		"unknown schema id": {0, 0, 0, 0x7f, 0x7f, 2, 3},
		"truncated body":    recs[0].Value[:8],
	}
	for _, v := range bad {
		recs = append(recs, &kgo.Record{Topic: c.cfg.Topics().Events, Key: []byte(tenant + "/bad"), Value: v})
	}

	seen, dupes := map[string]int{}, 0
	consumer := servicetest.Reader(t, c.cfg.Brokers, c.cfg.Topics().Notifications)
	var n notification.Notification
	// collect reads committed notifications until the deadline or a fetch.
	collect := func(until time.Time) {
		ctx, cancel := context.WithDeadline(t.Context(), until)
		defer cancel()
		consumer.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if _, err := c.reg.Decode(t.Context(), r.Value, &n); err != nil {
				t.Fatalf("notification does not decode: %v", err)
			}
			seen[n.ID]++
			if seen[n.ID] > 1 {
				dupes++
			}
		})
	}

	// The events go in four waves. Once the evaluator has committed
	// something of a wave, it is killed in the middle of the rest, and a new
	// one, with the same transactional id, takes over.
	txid := c.cfg.TopicPrefix + "evaluator-0"
	proc := startEvaluator(t, bin, c, txid)
	const waves = 4
	per := len(recs) / waves
	deadline := time.Now().Add(4 * time.Minute)
	for w := range waves {
		wave := recs[w*per:]
		if w < waves-1 {
			wave = recs[w*per : (w+1)*per]
		}
		before := len(seen)
		if err := c.cl.ProduceSync(t.Context(), wave...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for len(seen) == before {
			if time.Now().After(deadline) {
				t.Fatalf("wave %d: no notification committed in time", w)
			}
			collect(time.Now().Add(200 * time.Millisecond))
		}
		if w < waves-1 {
			proc.Kill()
			t.Logf("killed the evaluator with %d of %d notifications committed", len(seen), len(want))
			proc.Start()
		}
	}
	for len(seen) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("after 4 minutes, %d of %d notifications committed", len(seen), len(want))
		}
		collect(time.Now().Add(500 * time.Millisecond))
	}

	// Let the last evaluator finish the partitions, then stop it, and read
	// what it may still have committed.
	lagDeadline := time.Now().Add(time.Minute)
	adm := kadm.NewClient(c.cl)
	for {
		lags, err := adm.Lag(t.Context(), c.cfg.TopicPrefix+"evaluator")
		if err == nil && lags[c.cfg.TopicPrefix+"evaluator"].Lag.Total() == 0 {
			break
		}
		if time.Now().After(lagDeadline) {
			t.Fatalf("the evaluator did not consume every event: %v", err)
		}
		collect(time.Now().Add(200 * time.Millisecond))
	}
	_ = proc.Stop()
	// Nothing writes any more: read on until two polls in a row come back
	// empty.
	for empty := 0; empty < 2; {
		before := len(seen) + dupes
		collect(time.Now().Add(time.Second))
		if len(seen)+dupes == before {
			empty++
		} else {
			empty = 0
		}
	}

	if dupes != 0 {
		t.Errorf("%d duplicate notifications committed", dupes)
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("notification %s missing", id)
		}
	}
	for id := range seen {
		if !want[id] {
			t.Errorf("unexpected notification %s", id)
		}
	}
	checkDeadLetters(t, c, bad)
}

func checkDeadLetters(t *testing.T, c *cluster, bad map[string][]byte) {
	t.Helper()
	cl := servicetest.Reader(t, c.cfg.Brokers, c.cfg.Topics().EventsDLQ)
	reasons := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(reasons) < len(bad) && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			hdr := map[string]string{}
			for _, h := range r.Headers {
				hdr[h.Key] = string(h.Value)
			}
			if _, dup := reasons[string(r.Value)]; dup {
				t.Errorf("dead letter %x written twice", r.Value)
			}
			reasons[string(r.Value)] = hdr["herald-error"]
			if !strings.HasPrefix(hdr["herald-origin"], c.cfg.Topics().Events+"/") {
				t.Errorf("dead letter origin %q", hdr["herald-origin"])
			}
		})
		cancel()
	}
	for name, v := range bad {
		reason, ok := reasons[string(v)]
		if !ok {
			t.Errorf("%s: not in the dead-letter topic", name)
			continue
		}
		if reason == "" {
			t.Errorf("%s: dead letter without a reason", name)
		}
		b, _ := json.Marshal(reason)
		t.Logf("%s → %s", name, b)
	}
}
