package ruleevaluator

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

// balanceValue returns the wire-format bytes of a Balance update of acme
// whose new image has remaining set to rem, encoded straight with the
// registry's schema as any Avro producer would: NaN and ±Infinity are
// legal Avro doubles.
func balanceValue(tb testing.TB, reg *havro.Registry, topics string, rem float64) []byte {
	tb.Helper()
	schema, err := reg.Latest(tb.Context(), event.Subject(topics, "Balance"))
	if err != nil {
		tb.Fatal(err)
	}
	img := func(r float64) map[string]any {
		return map[string]any{"id": "bal-1", "accountId": "acct-1", "unit": "MB", "total": 1000.0, "used": 0.0, "remaining": r, "planId": nil}
	}
	v, err := schema.Encode(map[string]any{
		"eventId": "ev-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""), "tenantId": "acme",
		"entityType": "Balance", "entityId": "bal-1", "operation": "UPDATE", "occurredAt": time.Now(),
		"accountId": "acct-1", "deviceId": nil, "correlationId": nil, "old": img(600), "new": img(rem),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// TestRecordFaultsAreDeadLetteredAndOthersStillFire pins which failures are
// the event's own: each yields one dead letter with its class and origin,
// returns no error (so the transaction commits), and leaves the event's
// other rules firing.
func TestRecordFaultsAreDeadLetteredAndOthersStillFire(t *testing.T) {
	e, good := testEvaluator(t,
		"new.remaining < old.remaining",
		// Fails on every event: a string that is not a number.
		"int(new.unit) > 0",
	)
	ctx, topics := t.Context(), e.base.Topics
	split := func(out []*kgo.Record) (notes, dead []*kgo.Record) {
		for _, r := range out {
			switch r.Topic {
			case topics.Notifications:
				notes = append(notes, r)
			case topics.EventsDLQ:
				dead = append(dead, r)
			default:
				t.Fatalf("record to unexpected topic %s", r.Topic)
			}
		}
		return notes, dead
	}
	good.Partition, good.Offset = 3, 41

	t.Run("rule fails on the event", func(t *testing.T) {
		out, _, err := e.evaluate(ctx, good)
		if err != nil {
			t.Fatalf("evaluate: %v; a failing rule is the event's fault, not an abort", err)
		}
		notes, dead := split(out)
		if len(notes) != 1 || len(dead) != 1 {
			t.Fatalf("got %d notifications and %d dead letters; want the other rule's notification and one dead letter", len(notes), len(dead))
		}
		if c := header(dead[0], headerErrorClass); c != classRuleFailed {
			t.Errorf("class = %q, want %q", c, classRuleFailed)
		}
		if why := header(dead[0], headerError); !strings.Contains(why, "rule r1") {
			t.Errorf("reason %q does not name the failing rule r1", why)
		}
		if o := header(dead[0], headerOrigin); o != topics.Events+"/3/41" {
			t.Errorf("origin = %q, want %s/3/41", o, topics.Events)
		}
	})

	t.Run("bytes that do not decode", func(t *testing.T) {
		for name, value := range map[string][]byte{
			"not wire format":  []byte("plain text"),
			"unknown schema":   {0, 0, 0, 0x7f, 0xff, 2, 3},
			"truncated record": good.Value[:len(good.Value)/2],
		} {
			out, _, err := e.evaluate(ctx, &kgo.Record{Topic: topics.Events, Key: good.Key, Value: value})
			if err != nil {
				t.Fatalf("%s: evaluate: %v", name, err)
			}
			notes, dead := split(out)
			if len(notes) != 0 || len(dead) != 1 || header(dead[0], headerErrorClass) != classUnreadable {
				t.Fatalf("%s: got %d notifications, %d dead letters; want one unreadable dead letter", name, len(notes), len(dead))
			}
		}
	})

	t.Run("notification too large, found only when encoded", func(t *testing.T) {
		e.judge.MaxRecordBytes = 64
		defer func() { e.judge.MaxRecordBytes = 0 }()
		out, _, err := e.evaluate(ctx, good)
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		notes, dead := split(out)
		if len(notes) != 0 || len(dead) != 1 || !strings.Contains(header(dead[0], headerError), "too_large") {
			t.Fatalf("got %d notifications, %d dead letters (%q); want one too_large dead letter", len(notes), len(dead), header(dead[0], headerError))
		}
	})

	t.Run("non-finite numbers are JSON null and still notify", func(t *testing.T) {
		entities, err := e.base.Entities(ctx, []string{"Balance"}, false)
		if err != nil {
			t.Fatal(err)
		}
		// A computed field that carries the number as it is.
		withField, err := e.compiler.Compile("acme", "field", configstore.Rule{
			Name: "field", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When: "new.remaining != old.remaining",
			Notification: configstore.RuleNotify{Name: "Changed", State: "changed",
				Fields: map[string]string{"remaining": "new.remaining", "both": "[new.remaining, old.remaining]"}},
		}, entities)
		if err != nil {
			t.Fatal(err)
		}
		e.index.Put(withField)
		defer e.index.Remove("acme", "field")
		for _, rem := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			// NaN < 600 is false under CEL; Inf compares as a number.
			value := balanceValue(t, e.base.Registry, topics.Events, rem)
			out, _, err := e.evaluate(ctx, &kgo.Record{Topic: topics.Events, Key: good.Key, Value: value})
			if err != nil {
				t.Fatalf("remaining %v: evaluate: %v", rem, err)
			}
			notes, _ := split(out)
			// The field rule fires on every change; the first rule only
			// where CEL finds the number smaller.
			wantNotes := 1
			if rem < 600 {
				wantNotes = 2
			}
			if len(notes) != wantNotes {
				t.Fatalf("remaining %v: %d notifications, want %d (CEL compares %v < 600 as %v)", rem, len(notes), wantNotes, rem, rem < 600)
			}
			var n notification.Notification
			if _, err := e.base.Registry.Decode(ctx, notes[len(notes)-1].Value, &n); err != nil {
				t.Fatal(err)
			}
			if n.RuleID != "field" || n.Fields["remaining"] != "null" || n.Fields["both"] != "[null,600]" {
				t.Errorf("remaining %v: rule %s fields %v, want remaining null and both [null,600]", rem, n.RuleID, n.Fields)
			}
			var img map[string]any
			if err := json.Unmarshal([]byte(*n.New), &img); err != nil {
				t.Fatalf("new image %q is not JSON: %v", *n.New, err)
			}
			if v, ok := img["remaining"]; !ok || v != nil {
				t.Errorf("remaining %v in JSON = %v (present %v), want null", rem, v, ok)
			}
		}
	})
}

// TestRegistryOutageIsTheWorldsFault pins the other class: an event that
// cannot be judged because the registry is unreachable is not dead-lettered
// but returned as an error, so that the transaction aborts and the event is
// judged again once the registry is back.
func TestRegistryOutageIsTheWorldsFault(t *testing.T) {
	e, rec := testEvaluator(t, "true")
	down, err := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	// A registry that has cached nothing and reaches no server.
	e.judge.Registry = havro.NewRegistry(down, time.Hour)
	out, _, err := e.evaluate(t.Context(), rec)
	if err == nil || len(out) != 0 {
		t.Fatalf("evaluate = %d records, %v; want an error and no dead letter", len(out), err)
	}
}

// TestTransactionsRetryWhileTheRegistryIsDown runs the whole evaluator on
// kfake while the schema registry answers 503: transactions abort, /readyz
// says so, nothing is dead-lettered; once the registry is back every event
// yields its notification exactly once, a bad record among them is
// dead-lettered, and /readyz is ready again.
func TestTransactionsRetryWhileTheRegistryIsDown(t *testing.T) {
	cfg := servicetest.Fakes(t, 2)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cfg.Registry.URL = reg.URL()
	var down atomic.Bool
	reg.Intercept(func(w http.ResponseWriter, _ *http.Request) bool {
		if !down.Load() {
			return false
		}
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return true
	})
	const good = 20
	e, recs := runWithEvents(t, cfg, good)
	cl := notificationReader(t, cfg)
	// The events' schema stays cached by id; the notification schema's
	// newest version is looked up again once its cache entry ages.
	down.Store(true)
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for e.base.Health.Err() == nil || !strings.Contains(e.base.Health.Err().Error(), "transactions") {
		if time.Now().After(deadline) {
			t.Fatalf("readyz = %v; want it to report failing transactions", e.base.Health.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
	down.Store(false)

	collectExactlyOnce(t, e, cl, good, 1)
	deadline = time.Now().Add(30 * time.Second)
	for e.base.Health.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("readyz after recovery = %v", e.base.Health.Err())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runWithEvents runs an evaluator on cfg with tenant acme and a rule that
// fires on every Balance whose remaining drops, and returns it with good
// such events and, in their middle, one record that is not Avro.
func runWithEvents(t *testing.T, cfg service.Config, good int) (*Evaluator, []*kgo.Record) {
	t.Helper()
	e := runWithRule(t, Config{Config: cfg, Group: "g", TransactionalID: "tx", SessionTimeout: 6 * time.Second, MaxBatch: 100})
	recs := balanceDrops(t, e, good)
	bad := &kgo.Record{Topic: e.base.Topics.Events, Key: recs[0].Key, Value: []byte("not avro")}
	return e, slices.Insert(recs, good/2, bad)
}

// runWithRule runs an evaluator configured by c with tenant acme and a rule
// that fires on every Balance whose remaining drops.
func runWithRule(t *testing.T, c Config) *Evaluator {
	t.Helper()
	e, err := New(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	put := func(kind, id string, spec any) {
		t.Helper()
		tenant := "acme"
		if kind == configstore.KindTenant {
			tenant = configstore.OperatorTenant
		}
		doc, err := configstore.NewDocument(tenant, kind, id, spec)
		if err == nil {
			_, err = e.base.Config.Put(t.Context(), doc, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	servicetest.Run(t, e)
	put(configstore.KindTenant, "acme", configstore.Tenant{Name: "acme"})
	put(configstore.KindRule, "low", configstore.Rule{
		Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
		When: "new.remaining < old.remaining", Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
	})
	return e
}

// balanceDrops returns n events of one Balance, each a drop of its
// remaining allowance: event i leaves 500 - i.
func balanceDrops(t *testing.T, e *Evaluator, n int) []*kgo.Record {
	return balanceDropsOf(t, e, n, 1)
}

// balanceDropsOf returns n drops spread over balances: event i is of
// balance i % balances (of its own account) and leaves 500 - i.
func balanceDropsOf(t *testing.T, e *Evaluator, n, balances int) []*kgo.Record {
	t.Helper()
	var recs []*kgo.Record
	for i := range n {
		acct, id := fmt.Sprintf("acct-%d", i%balances+1), fmt.Sprintf("bal-%d", i%balances+1)
		key, value, err := event.Encode(t.Context(), e.base.Registry, e.base.Topics.Events, "acme", &event.Event{
			EntityType: "Balance", EntityID: id, Operation: "UPDATE", AccountID: &acct,
			Old: map[string]any{"id": id, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 0.0, "remaining": 600.0},
			New: map[string]any{"id": id, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 0.0, "remaining": float64(500 - i)},
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: e.base.Topics.Events, Key: key, Value: value})
	}
	return recs
}

// notificationReader reads the committed notifications and events dead
// letters of cfg's topics from their start.
func notificationReader(t *testing.T, cfg service.Config) *kgo.Client {
	t.Helper()
	topics := cfg.Kafka.Topics()
	return servicetest.Reader(t, cfg.Kafka.Brokers, topics.Notifications, topics.EventsDLQ)
}

// collectExactlyOnce reads cl until it has seen notes notifications and
// dead dead letters, and fails the test if any notification was committed
// twice or more dead letters were.
func collectExactlyOnce(t *testing.T, e *Evaluator, cl *kgo.Client, notes, dead int) {
	t.Helper()
	topics := e.base.Topics
	seen := map[string]int{}
	gotDead := 0
	for len(seen) < notes || gotDead < dead {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		fs := cl.PollFetches(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%d of %d notifications, %d of %d dead letters", len(seen), notes, gotDead, dead)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == topics.EventsDLQ {
				gotDead++
				return
			}
			var n notification.Notification
			if _, err := e.base.Registry.Decode(t.Context(), r.Value, &n); err != nil {
				t.Fatal(err)
			}
			seen[n.ID]++
		})
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("notification %s committed %d times", id, c)
		}
	}
	if gotDead != dead {
		t.Errorf("%d dead letters, want %d", gotDead, dead)
	}
}

// controlledFakes returns fakes whose Kafka is a kfake cluster of the
// test's own, for the test to control, with topics of partitions.
func controlledFakes(t *testing.T, partitions int32) (*kfake.Cluster, service.Config) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := servicetest.Fakes(t, partitions)
	cfg.Kafka.Brokers = c.ListenAddrs()
	return c, cfg
}

// TestFencedProducerGetsANewSession has the broker fence the evaluator's
// producer when it commits, as a broker does on coming back from an outage
// longer than the transaction timeout: it aborts the open transaction and
// bumps the producer's epoch, after which the producer can never begin a
// transaction again. The evaluator must carry on with a new session, and
// every event still yields its notification exactly once.
func TestFencedProducerGetsANewSession(t *testing.T) {
	c, cfg := controlledFakes(t, 2)
	var fenced atomic.Int32
	c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.EndTxnRequest)
		if !req.Commit || fenced.Load() > 0 {
			return nil, nil, false
		}
		fenced.Add(1)
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.ProducerFenced.Code
		return resp, nil, true
	})
	c.KeepControl()

	const good = 20
	e, recs := runWithEvents(t, cfg, good)
	cl := notificationReader(t, cfg)
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	collectExactlyOnce(t, e, cl, good, 1)
	if fenced.Load() == 0 {
		t.Fatal("the broker never fenced a commit")
	}
}
