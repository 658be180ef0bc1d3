// Command evaluator-bench measures the rule evaluator's throughput on a
// real broker next to plain franz-go passthroughs of the same records in the
// same run, and prints events/s for each and the evaluator's ratio to the
// plain passthrough.
//
//	go run ./services/rule-evaluator/cmd/evaluator-bench -brokers 127.0.0.1:19092
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/service"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
)

func main() {
	brokers := flag.String("brokers", envOr("HERALD_TEST_KAFKA_BROKERS", "127.0.0.1:19092"), "seed brokers")
	events := flag.Int("events", 100000, "events to process")
	ruleCount := flag.Int("rules", 10, "rules per tenant watching the events")
	partitions := flag.Int("partitions", 6, "partitions of the events topic")
	flag.Parse()
	if err := run(context.Background(), strings.Split(*brokers, ","), *events, *ruleCount, int32(*partitions)); err != nil {
		fmt.Fprintln(os.Stderr, "evaluator-bench:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, brokers []string, n, ruleCount int, partitions int32) error {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cfg := kafka.Config{Brokers: brokers, TopicPrefix: "bench-" + hex.EncodeToString(b) + ".", Partitions: partitions, ReplicationFactor: 1, CreateTopics: true}
	topics := cfg.Topics()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	fake := srfake.New()
	defer fake.Close()
	src, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		return err
	}
	reg := havro.NewRegistry(src, time.Hour)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, cfg); err != nil {
		return err
	}
	out := cfg.TopicPrefix + "passthrough"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, out); err != nil {
		return err
	}
	if err := service.RegisterSchemas(ctx, reg, topics); err != nil {
		return err
	}
	if err := seedRules(ctx, brokers, topics.Config, ruleCount, quiet); err != nil {
		return err
	}
	if err := produceEvents(ctx, cl, reg, topics.Events, n); err != nil {
		return err
	}
	fmt.Printf("%d Balance events on %d partitions, %d rules per tenant, broker %s\n", n, partitions, ruleCount, strings.Join(brokers, ","))

	plain, err := measure(ctx, cl, cfg.TopicPrefix+"plain", topics.Events, func(ctx context.Context, group string) error {
		return passthrough(ctx, brokers, group, topics.Events, out)
	})
	if err != nil {
		return err
	}
	fmt.Printf("  plain passthrough (consume, produce, commit): %8.0f events/s\n", float64(n)/plain.Seconds())

	eval, err := measure(ctx, cl, cfg.TopicPrefix+"evaluator", topics.Events, func(ctx context.Context, group string) error {
		return ruleevaluator.Run(ctx, ruleevaluator.Config{
			Config: service.Config{
				Kafka: cfg, Registry: service.RegistryConfig{URL: fake.URL(), LatestTTL: time.Hour},
				HTTPAddr: "127.0.0.1:0", Logger: quiet,
			},
			Group: group, TransactionalID: group, SessionTimeout: 10 * time.Second, MaxBatch: 5000,
		})
	})
	if err != nil {
		return err
	}
	fmt.Printf("  rule-evaluator (decode, %d rules, transactions): %8.0f events/s\n", ruleCount, float64(n)/eval.Seconds())
	fmt.Printf("  ratio rule-evaluator / plain passthrough: %.2f\n", plain.Seconds()/eval.Seconds())
	return nil
}

// measure runs consumer as group until the group has committed every
// record of topic, and returns how long that took.
func measure(ctx context.Context, cl *kgo.Client, group, topic string, consumer func(context.Context, string) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- consumer(ctx, group) }()
	adm := kadm.NewClient(cl)
	for {
		select {
		case err := <-errc:
			return 0, fmt.Errorf("%s stopped: %v", group, err)
		case <-time.After(20 * time.Millisecond):
		}
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			continue
		}
		l := lags[group]
		if l.DescribeErr == nil && l.FetchErr == nil && committedAll(l, topic) {
			return time.Since(start), nil
		}
	}
}

func committedAll(l kadm.DescribedGroupLag, topic string) bool {
	parts := l.Lag[topic]
	if len(parts) == 0 {
		return false
	}
	for _, p := range parts {
		if p.Commit.At < 0 || p.Lag != 0 {
			return false
		}
	}
	return true
}

// passthrough consumes topic as group and produces each record unchanged
// to out, committing after each poll's records are acknowledged.
func passthrough(ctx context.Context, brokers []string, group, topic, out string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil {
			return nil
		}
		recs := make([]*kgo.Record, 0, fetches.NumRecords())
		fetches.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value})
		})
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return err
		}
	}
}

func seedRules(ctx context.Context, brokers []string, topic string, n int, log *slog.Logger) error {
	store, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(brokers...)}, topic, log)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go store.Run(ctx)
	docs := []configstore.Document{}
	tenant, _ := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"})
	docs = append(docs, tenant)
	for i := range n {
		pct := float64(i%20+1) * 5 / 100
		d, err := configstore.NewDocument("acme", configstore.KindRule, fmt.Sprintf("rul_%d", i), configstore.Rule{
			Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", pct, pct),
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		})
		if err != nil {
			return err
		}
		docs = append(docs, d)
	}
	for _, d := range docs {
		if _, err := store.Put(ctx, d, 0); err != nil {
			return err
		}
	}
	return nil
}

// produceEvents writes n Balance updates over 250 accounts, each dropping
// the remaining allowance by 1% of the total.
func produceEvents(ctx context.Context, cl *kgo.Client, reg *havro.Registry, topic string, n int) error {
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		acct := fmt.Sprintf("acct-%d", i%250)
		rem := float64(1000 - 10*(i%100))
		img := func(r float64) map[string]any {
			return map[string]any{"id": "bal-" + acct, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - r, "remaining": r}
		}
		key, value, err := event.Encode(ctx, reg, topic, "acme", &event.Event{
			EntityType: "Balance", EntityID: "bal-" + acct, Operation: "UPDATE", AccountID: &acct, Old: img(rem), New: img(rem - 10),
		}, "")
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: key, Value: value})
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}
