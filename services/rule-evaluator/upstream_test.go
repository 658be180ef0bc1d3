package ruleevaluator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/peertest"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
)

// TestConfluentPythonProducerNaNIsDelivered has an upstream system that
// skips Herald's ingest, Confluent's Python client with its AvroSerializer
// and the registered schema, write Balance updates straight to the events
// topic: one whose new remaining is NaN, one +Infinity, one ordinary.
// Each must yield its notification, the non-finite numbers written as JSON
// null in the new image, and none may reach the dead-letter topic.
func TestConfluentPythonProducerNaNIsDelivered(t *testing.T) {
	python := peertest.Python(t)
	c := newCluster(t)
	const (
		tenant = "acme"
		ruleID = "rul_changed"
	)
	c.put(t,
		doc(t, configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: "Acme"}),
		doc(t, tenant, configstore.KindRule, ruleID, configstore.Rule{
			Name: "changed", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			// NaN compares unequal to every number, so all three fire.
			When:         "new.remaining != old.remaining",
			Notification: configstore.RuleNotify{Name: "BalanceChanged", State: "changed"},
		}),
	)

	kcfg := c.cfg
	kcfg.CreateTopics = false
	ev, err := ruleevaluator.New(t.Context(), ruleevaluator.Config{
		Config: service.Config{
			Kafka:    kcfg,
			Registry: service.RegistryConfig{URL: c.url, LatestTTL: time.Second, Timeout: time.Minute},
			HTTPAddr: "127.0.0.1:0",
			Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
		Group: c.cfg.TopicPrefix + "evaluator", TransactionalID: c.cfg.TopicPrefix + "evaluator-0",
		SessionTimeout: 6 * time.Second, MaxBatch: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	servicetest.Run(t, ev)

	topics := c.cfg.Topics()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "testdata/produce_balance.py",
		strings.Join(c.cfg.Brokers, ","), c.url, topics.Events, event.Subject(topics.Events, "Balance"), "1", tenant)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("produce_balance.py: %v\n%s", err, stderr.Bytes())
	}
	// The events the peer delivered, by id, with their new remaining.
	want := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		id, rem, ok := strings.Cut(sc.Text(), " ")
		f, err := strconv.ParseFloat(rem, 64)
		if !ok || err != nil {
			t.Fatalf("produce_balance.py printed %q, want an event id and a number", sc.Text())
		}
		want[id] = f
	}
	if len(want) != 3 {
		t.Fatalf("the peer delivered %d events, want 3:\n%s", len(want), out)
	}

	cl := servicetest.Reader(t, c.cfg.Brokers, topics.Notifications, topics.EventsDLQ)
	got := map[string]notification.Notification{}
	var dead []*kgo.Record
	// poll reads committed records for up to a second and says whether
	// there were any.
	poll := func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		fetches := cl.PollFetches(pctx)
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Topic == topics.EventsDLQ {
				dead = append(dead, r)
				return
			}
			var n notification.Notification
			if _, err := c.reg.Decode(ctx, r.Value, &n); err != nil {
				t.Fatalf("notification does not decode: %v", err)
			}
			if _, dup := got[n.Event.ID]; dup {
				t.Errorf("second notification for event %s", n.Event.ID)
			}
			got[n.Event.ID] = n
		})
		return fetches.NumRecords() > 0
	}
	for len(got) < len(want) && len(dead) == 0 && ctx.Err() == nil {
		poll()
	}
	// Whatever else the evaluator wrote for these events has been
	// committed with them; read until the topics are quiet.
	for poll() {
	}

	for _, r := range dead {
		hdr := map[string]string{}
		for _, h := range r.Headers {
			hdr[h.Key] = string(h.Value)
		}
		t.Errorf("dead letter from %s: %s", hdr["herald-origin"], hdr["herald-error"])
	}
	for id, rem := range want {
		n, ok := got[id]
		if !ok {
			t.Errorf("event %s (remaining %v): no notification", id, rem)
			continue
		}
		if n.ID != notification.ID(tenant, id, ruleID) || n.TenantID != tenant || n.RuleID != ruleID {
			t.Errorf("event %s: notification %s of tenant %s, rule %s; want %s of %s, %s",
				id, n.ID, n.TenantID, n.RuleID, notification.ID(tenant, id, ruleID), tenant, ruleID)
		}
		// JSON has no NaN or Infinity: those are null, the rest as sent.
		var wantJSON any = rem
		if math.IsNaN(rem) || math.IsInf(rem, 0) {
			wantJSON = nil
		}
		if n.New == nil {
			t.Errorf("event %s (remaining %v): notification without the new image", id, rem)
			continue
		}
		var img map[string]any
		if err := json.Unmarshal([]byte(*n.New), &img); err != nil {
			t.Errorf("event %s: new image %q is not JSON: %v", id, *n.New, err)
			continue
		}
		if v, present := img["remaining"]; !present || v != wantJSON {
			t.Errorf("event %s (remaining %v): new image %s, want \"remaining\":%s", id, rem, *n.New, jsonText(wantJSON))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("notification for event %s, which the peer did not send", id)
		}
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
