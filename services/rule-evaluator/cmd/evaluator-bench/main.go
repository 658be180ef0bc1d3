// Command evaluator-bench measures the rule evaluator's throughput on a
// real broker next to a plain franz-go passthrough of the same records in
// the same run (consume, produce unchanged, commit), and prints events/s for
// each, the evaluator's ratio to the passthrough, and the processor seconds
// each spends per 1,000 events. The two take turns, -rounds times each,
// and each rate is measured once a tenth of the events are committed, so
// that joining the group and catching up with the rules are left out.
//
//	go run ./services/rule-evaluator/cmd/evaluator-bench -brokers 127.0.0.1:19092 -rules 10,100
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/bench"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/service"
	ruleevaluator "github.com/heraldhq/herald/services/rule-evaluator"
)

func main() {
	o := options{}
	brokers := flag.String("brokers", envOr("HERALD_TEST_KAFKA_BROKERS", "127.0.0.1:19092"), "seed brokers")
	flag.IntVar(&o.events, "events", 200000, "events per rule count")
	ruleCounts := flag.String("rules", "10", "rules per tenant watching the events; a comma-separated list measures each")
	partitions := flag.Int("partitions", 6, "partitions of the events topic")
	flag.IntVar(&o.rounds, "rounds", 2, "turns each of the passthrough and the evaluator takes")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures to this file as JSON")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the evaluator's first run to this file")
	flag.IntVar(&o.sessions, "sessions", 1, "transactional sessions the evaluator runs (HERALD_EVALUATOR_SESSIONS)")
	flag.IntVar(&o.maxBatch, "max-batch", 10000, "events per transaction at most (HERALD_EVALUATOR_MAX_BATCH; this is its default)")
	flag.DurationVar(&o.warmup, "warmup", 30*time.Second, "before the first turn, run the passthrough and the evaluator in turns, unmeasured, at least once and until this long has passed, so that a freshly started broker's JIT has compiled its hot paths; 0 runs none")
	flag.Parse()
	o.brokers, o.partitions = strings.Split(*brokers, ","), int32(*partitions)
	for _, s := range strings.Split(*ruleCounts, ",") {
		n, err := strconv.Atoi(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "evaluator-bench: -rules:", err)
			os.Exit(2)
		}
		o.rules = append(o.rules, n)
	}
	if err := run(context.Background(), o); err != nil {
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

type options struct {
	brokers    []string
	events     int
	rules      []int
	partitions int32
	rounds     int
	jsonOut    string
	cpuProfile string
	sessions   int
	maxBatch   int
	warmup     time.Duration
}

// figures are one rule count's results.
type figures struct {
	Rules             int       `json:"rules"`
	Events            int       `json:"events"`
	Evaluator         float64   `json:"evaluator_events_per_s"`
	Passthrough       float64   `json:"passthrough_events_per_s"`
	Ratio             float64   `json:"ratio"`
	EvaluatorCPU      float64   `json:"evaluator_cpu_s_per_1000_events"`
	PassthroughCPU    float64   `json:"passthrough_cpu_s_per_1000_events"`
	EvaluatorRounds   []float64 `json:"evaluator_rounds_events_per_s"`
	PassthroughRounds []float64 `json:"passthrough_rounds_events_per_s"`
	// The same from the moment each consumer starts, joining its group
	// and catching up with the rules included.
	EvaluatorFromStart   float64 `json:"evaluator_events_per_s_from_start"`
	PassthroughFromStart float64 `json:"passthrough_events_per_s_from_start"`
	RatioFromStart       float64 `json:"ratio_from_start"`
}

func run(ctx context.Context, o options) error {
	var all []figures
	for i, n := range o.rules {
		warmup := o.warmup
		if i > 0 {
			warmup = 0
		}
		f, err := measureRules(ctx, o, n, warmup)
		if err != nil {
			return fmt.Errorf("%d rules: %w", n, err)
		}
		all = append(all, f)
	}
	return bench.WriteJSON(o.jsonOut, all)
}

// measureRules measures the evaluator with n rules per tenant, on topics
// of its own, next to the passthrough, after unmeasured runs of each for
// warmup.
func measureRules(ctx context.Context, o options, n int, warmup time.Duration) (figures, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bench.NewBroker(ctx, o.brokers, o.partitions, quiet)
	if err != nil {
		return figures{}, err
	}
	defer b.Close()
	cfg, topics, adm := b.Kafka, b.Kafka.Topics(), kadm.NewClient(b.Client)
	out := cfg.TopicPrefix + "passthrough"
	if _, err := adm.CreateTopic(ctx, o.partitions, 1, nil, out); err != nil {
		return figures{}, err
	}
	docs, err := rules(n)
	if err != nil {
		return figures{}, err
	}
	if err := b.Put(ctx, quiet, docs...); err != nil {
		return figures{}, err
	}
	if err := produceEvents(ctx, b, o.events); err != nil {
		return figures{}, err
	}
	fmt.Printf("%d Balance events on %d partitions, %d rules per tenant, %d evaluator sessions, transactions of up to %d events, broker %s\n",
		o.events, o.partitions, n, o.sessions, o.maxBatch, strings.Join(o.brokers, ","))

	// evaluator runs the rule evaluator as group, a round's consumer.
	evaluator := func(group string) func(context.Context) error {
		return func(ctx context.Context) error {
			return ruleevaluator.Run(ctx, ruleevaluator.Config{
				Config: service.Config{
					Kafka: cfg, Registry: service.RegistryConfig{URL: b.RegistryURL, LatestTTL: time.Hour},
					HTTPAddr: "127.0.0.1:0", Logger: quiet,
				},
				Group: group, TransactionalID: group, SessionTimeout: 10 * time.Second, MaxBatch: o.maxBatch, GatherWait: time.Millisecond, Sessions: o.sessions,
			})
		}
	}
	// Both, for the broker's transactions warm up only once they run. A
	// broker started seconds before is slower for its first minute, and
	// slower still for the evaluator, which needs more of the processor
	// the broker's compiler threads take.
	for i, start := 0, time.Now(); warmup > 0 && (i == 0 || time.Since(start) < warmup); i++ {
		group := fmt.Sprintf("%swarmup-%d", cfg.TopicPrefix, i)
		if _, _, _, err := bench.Consume(ctx, adm, group, topics.Events, int64(o.events), "", func(ctx context.Context) error {
			return passthrough(ctx, o.brokers, group, topics.Events, out)
		}); err != nil {
			return figures{}, err
		}
		group = fmt.Sprintf("%swarmup-evaluator-%d", cfg.TopicPrefix, i)
		if _, _, _, err := bench.Consume(ctx, adm, group, topics.Events, int64(o.events), "", evaluator(group)); err != nil {
			return figures{}, err
		}
	}
	f := figures{Rules: n, Events: o.events}
	var plain, eval bench.Span
	var plainN, evalN int64
	var plainAll, evalAll time.Duration
	for round := range o.rounds {
		group := fmt.Sprintf("%splain-%d", cfg.TopicPrefix, round)
		span, done, all, err := bench.Consume(ctx, adm, group, topics.Events, int64(o.events), "", func(ctx context.Context) error {
			return passthrough(ctx, o.brokers, group, topics.Events, out)
		})
		if err != nil {
			return figures{}, err
		}
		plain, plainN, plainAll = plain.Add(span), plainN+done, plainAll+all.Wall
		f.PassthroughRounds = append(f.PassthroughRounds, span.Rate(done))
		fmt.Printf("  plain passthrough (consume, produce, commit):       %8.0f events/s, %.3f CPU s per 1,000\n", span.Rate(done), span.CPUPer1000(done))

		group = fmt.Sprintf("%sevaluator-%d", cfg.TopicPrefix, round)
		profile := ""
		if round == 0 {
			profile = o.cpuProfile
		}
		span, done, all, err = bench.Consume(ctx, adm, group, topics.Events, int64(o.events), profile, evaluator(group))
		if err != nil {
			return figures{}, err
		}
		eval, evalN, evalAll = eval.Add(span), evalN+done, evalAll+all.Wall
		f.EvaluatorRounds = append(f.EvaluatorRounds, span.Rate(done))
		fmt.Printf("  rule-evaluator (decode, %3d rules, transactions):   %8.0f events/s, %.3f CPU s per 1,000\n", n, span.Rate(done), span.CPUPer1000(done))
	}
	f.Passthrough, f.Evaluator = plain.Rate(plainN), eval.Rate(evalN)
	f.PassthroughCPU, f.EvaluatorCPU = plain.CPUPer1000(plainN), eval.CPUPer1000(evalN)
	f.Ratio = f.Evaluator / f.Passthrough
	total := float64(o.events * o.rounds)
	f.PassthroughFromStart, f.EvaluatorFromStart = total/plainAll.Seconds(), total/evalAll.Seconds()
	f.RatioFromStart = f.EvaluatorFromStart / f.PassthroughFromStart
	fmt.Printf("  over %d rounds: passthrough %.0f events/s, rule-evaluator %.0f events/s; ratio %.2f (%.2f from each consumer's start: %.0f and %.0f events/s)\n",
		o.rounds, f.Passthrough, f.Evaluator, f.Ratio, f.RatioFromStart, f.PassthroughFromStart, f.EvaluatorFromStart)
	return f, nil
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
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// rules are the acme tenant and n rules of it watching Balance updates,
// each for a drop below its own share of the total.
func rules(n int) ([]configstore.Document, error) {
	tenant, err := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"})
	if err != nil {
		return nil, err
	}
	docs := []configstore.Document{tenant}
	for i := range n {
		pct := float64(i%20+1) * 5 / 100
		d, err := configstore.NewDocument("acme", configstore.KindRule, fmt.Sprintf("rul_%d", i), configstore.Rule{
			Name: "low", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         fmt.Sprintf("new.remaining < new.total * %g && old.remaining >= old.total * %g", pct, pct),
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low"},
		})
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// produceEvents writes n Balance updates over 250 accounts, each dropping
// the remaining allowance by 1% of the total.
func produceEvents(ctx context.Context, b *bench.Broker, n int) error {
	topic := b.Kafka.Topics().Events
	return b.Produce(ctx, n, func(i int) (*kgo.Record, error) {
		acct := fmt.Sprintf("acct-%d", i%250)
		rem := float64(1000 - 10*(i%100))
		img := func(r float64) map[string]any {
			return map[string]any{"id": "bal-" + acct, "accountId": acct, "unit": "MB", "total": 1000.0, "used": 1000 - r, "remaining": r}
		}
		key, value, err := event.Encode(ctx, b.Registry, topic, "acme", &event.Event{
			EntityType: "Balance", EntityID: "bal-" + acct, Operation: "UPDATE", AccountID: &acct, Old: img(rem), New: img(rem - 10),
		}, "")
		if err != nil {
			return nil, err
		}
		return &kgo.Record{Topic: topic, Key: key, Value: value}, nil
	})
}
