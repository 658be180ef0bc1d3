// Command bench measures Herald on a real broker in one go and prints one
// table: each component next to the baseline it is held to, measured in
// the same run, and the end-to-end latency of the whole pipeline. It runs
// the components' own bench commands (evaluator-bench, webhook-bench,
// ingest-bench, built beside it), each in a process of its own so that
// the processor time it reports is its component's, then runs every
// service in this process as the devstack does, on the real broker, for
// the end-to-end figures, each load followed by the same load through a
// chain of the same shape with nothing of Herald in it (floor.go). It
// writes every figure to -out as JSON.
//
// make bench builds it, starts a broker of its own and runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type options struct {
	brokers       string
	bin           string
	out           string
	events        int
	notifications int
	rounds        int
	load          time.Duration
	e2e           time.Duration
	parts         string
	e2eMax        float64
}

func main() {
	var o options
	self, _ := os.Executable()
	flag.StringVar(&o.brokers, "brokers", "127.0.0.1:19892", "the broker to measure on")
	flag.StringVar(&o.bin, "bin", filepath.Dir(self), "the folder holding evaluator-bench, webhook-bench and ingest-bench")
	flag.StringVar(&o.out, "out", ".bench/results.json", "where to write the figures as JSON")
	flag.IntVar(&o.events, "events", 200000, "events the evaluator judges, per rule count")
	flag.IntVar(&o.notifications, "notifications", 40000, "notifications the webhook sender delivers")
	flag.IntVar(&o.rounds, "rounds", 2, "turns each component and its baseline take")
	flag.DurationVar(&o.load, "load", 8*time.Second, "how long each HTTP load (wrk, the bare client loop) runs")
	flag.DurationVar(&o.e2e, "e2e", 10*time.Second, "how long each end-to-end load runs")
	flag.StringVar(&o.parts, "parts", "p1,p2,p3,p4", "the parts to measure, comma-separated")
	flag.Float64Var(&o.e2eMax, "e2e-max", 0, "take the pipeline's maximum as this many events/s instead of measuring it, so that two builds meet the same loads")
	flag.Parse()
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// results are what bench writes: the ratios the issue names, then every
// figure they come from.
type results struct {
	Date    string  `json:"date"`
	Seconds float64 `json:"seconds"`
	Brokers string  `json:"brokers"`
	P1      float64 `json:"p1_evaluator_vs_passthrough"`
	P1At100 float64 `json:"p1_at_100_rules"`
	P2      float64 `json:"p2_webhook_vs_bare_client"`
	// The Kafka loop over the bare loop, and the sender over the Kafka
	// loop: what Kafka costs a sender, and what Herald's sender costs.
	P2KafkaLoop     float64 `json:"p2_kafka_loop_vs_bare_client"`
	P2SenderVsKafka float64 `json:"p2_webhook_vs_kafka_loop"`
	P3              float64 `json:"p3_ingest_vs_trivial_handler"`
	P4              float64 `json:"p4_e2e_p99_ms_at_half_load"`
	P4P50           float64 `json:"p4_e2e_p50_ms_at_half_load"`
	// The same of the Kafka-only chain, and Herald's p99 over it.
	P4Floor      float64            `json:"p4_floor_p99_ms_at_half_load"`
	P4FloorRatio float64            `json:"p4_e2e_p99_vs_floor_at_half_load"`
	CPU          map[string]float64 `json:"cpu_s_per_1000_events"`
	Evaluator    []map[string]any   `json:"evaluator"`
	Webhook      map[string]any     `json:"webhook"`
	Ingest       map[string]any     `json:"ingest"`
	E2E          e2eFigures         `json:"e2e"`
}

func run(ctx context.Context, o options) error {
	start := time.Now()
	tmp, err := os.MkdirTemp("", "herald-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r := results{Date: start.UTC().Format(time.RFC3339), Brokers: o.brokers, CPU: map[string]float64{}}

	parts := strings.Split(o.parts, ",")
	if slices.Contains(parts, "p1") {
		fmt.Println("== rule evaluator next to a plain passthrough (P1)")
		if err := sub(ctx, o, "evaluator-bench", filepath.Join(tmp, "evaluator.json"), &r.Evaluator,
			"-rules", "10,100", "-events", strconv.Itoa(o.events), "-rounds", strconv.Itoa(o.rounds)); err != nil {
			return err
		}
	}
	if slices.Contains(parts, "p2") {
		fmt.Println("== webhook sender next to a bare net/http client loop (P2)")
		if err := sub(ctx, o, "webhook-bench", filepath.Join(tmp, "webhook.json"), &r.Webhook,
			"-n", strconv.Itoa(o.notifications), "-d", o.load.String(), "-rounds", strconv.Itoa(o.rounds)); err != nil {
			return err
		}
	}
	if slices.Contains(parts, "p3") {
		fmt.Println("== ingest next to a trivial handler (P3)")
		if err := sub(ctx, o, "ingest-bench", filepath.Join(tmp, "ingest.json"), &r.Ingest,
			"-d", o.load.String(), "-rounds", strconv.Itoa(o.rounds)); err != nil {
			return err
		}
	}
	if slices.Contains(parts, "p4") {
		fmt.Println("== end to end: POST accepted to the receiver holding the notification (P4)")
		r.E2E, err = runE2E(ctx, strings.Split(o.brokers, ","), o.e2e, o.e2eMax, []float64{0.1, 0.5, 0.8})
		if err != nil {
			return fmt.Errorf("end to end: %w", err)
		}
	}

	for _, e := range r.Evaluator {
		rules := num(e, "rules")
		r.CPU[fmt.Sprintf("rule-evaluator, %.0f rules", rules)] = num(e, "evaluator_cpu_s_per_1000_events")
		switch rules {
		case 10:
			r.P1 = num(e, "ratio")
		case 100:
			r.P1At100 = num(e, "ratio")
		}
	}
	if len(r.Evaluator) > 0 {
		r.CPU["plain passthrough"] = num(r.Evaluator[0], "passthrough_cpu_s_per_1000_events")
	}
	r.CPU["webhook-sender"] = num(r.Webhook, "sender_cpu_s_per_1000_deliveries")
	r.CPU["bare net/http client loop"] = num(r.Webhook, "bare_client_cpu_s_per_1000_requests")
	r.CPU["ingest"] = num(r.Ingest, "ingest_cpu_s_per_1000_events")
	r.CPU["trivial handler"] = num(r.Ingest, "trivial_handler_cpu_s_per_1000_requests")
	r.CPU["Kafka loop"] = num(r.Webhook, "kafka_loop_cpu_s_per_1000_deliveries")
	r.P2, r.P3 = num(r.Webhook, "ratio"), num(r.Ingest, "ratio")
	r.P2KafkaLoop, r.P2SenderVsKafka = num(r.Webhook, "kafka_loop_vs_bare_client"), num(r.Webhook, "sender_vs_kafka_loop")
	for i, l := range r.E2E.Loads {
		if l.Share == 0.5 {
			r.P4, r.P4P50 = l.P99, l.P50
			r.P4Floor = r.E2E.Floor[i].P99
			r.P4FloorRatio = l.P99 / r.P4Floor
		}
	}
	r.Seconds = time.Since(start).Seconds()
	table(r)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	fmt.Printf("\nfigures in %s; %.0f s in all\n", o.out, r.Seconds)
	return os.WriteFile(o.out, append(b, '\n'), 0o644)
}

// sub runs one of the bench commands beside this one, its output shown,
// and reads the figures it writes into out.
func sub(ctx context.Context, o options, name, jsonOut string, out any, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(o.bin, name), append([]string{"-brokers", o.brokers, "-json", jsonOut}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	b, err := os.ReadFile(jsonOut)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func num(m map[string]any, key string) float64 {
	f, _ := m[key].(float64)
	return f
}

// table prints the figures as the issue lays them out.
func table(r results) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "what\tHerald\tbaseline in the same run\tratio\taim")
	for _, e := range r.Evaluator {
		aim := "≥ 0.6"
		if num(e, "rules") == 100 {
			aim = "≥ 0.35"
		}
		fmt.Fprintf(w, "P1 rule evaluator, %.0f rules\t%.0f events/s\tplain passthrough %.0f events/s\t%.2f\t%s\n",
			num(e, "rules"), num(e, "evaluator_events_per_s"), num(e, "passthrough_events_per_s"), num(e, "ratio"), aim)
	}
	fmt.Fprintf(w, "P2 webhook sender\t%.0f deliveries/s\tbare net/http loop %.0f requests/s (wrk %.0f)\t%.2f\t≥ 0.8\n",
		num(r.Webhook, "sender_deliveries_per_s"), num(r.Webhook, "bare_client_requests_per_s"), num(r.Webhook, "wrk_requests_per_s"), r.P2)
	fmt.Fprintf(w, "   the same from Kafka, nothing of Herald\t%.0f deliveries/s\tbare net/http loop\t%.2f\t(the sender: %.2f of it)\n",
		num(r.Webhook, "kafka_loop_deliveries_per_s"), r.P2KafkaLoop, r.P2SenderVsKafka)
	fmt.Fprintf(w, "P3 ingest\t%.0f events/s\ttrivial 202 handler %.0f requests/s\t%.2f\t≥ 0.6\n",
		num(r.Ingest, "ingest_events_per_s"), num(r.Ingest, "trivial_handler_requests_per_s"), r.P3)
	produceOnly := num(r.Ingest, "produce_only_handler_requests_per_s")
	fmt.Fprintf(w, "   a handler that only produces\t%.0f requests/s\ttrivial 202 handler\t%.2f\t(ingest: %.2f of it)\n",
		produceOnly, produceOnly/num(r.Ingest, "trivial_handler_requests_per_s"), num(r.Ingest, "ingest_events_per_s")/produceOnly)
	for i, l := range r.E2E.Loads {
		aim := ""
		if l.Share == 0.5 {
			aim = "p99 ≤ 15 ms"
		}
		fl := r.E2E.Floor[i]
		fmt.Fprintf(w, "P4 end to end at %.0f%% of %.0f events/s\tp50 %.1f ms, p99 %.1f ms\tKafka-only chain p50 %.1f ms, p99 %.1f ms\tp99 %.2f\t%s\n",
			100*l.Share, r.E2E.Max, l.P50, l.P99, fl.P50, fl.P99, l.P99/fl.P99, aim)
	}
	w.Flush()
	fmt.Println()
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "processor seconds per 1,000 events\t")
	for _, k := range []string{"rule-evaluator, 10 rules", "rule-evaluator, 100 rules", "plain passthrough", "webhook-sender", "bare net/http client loop", "Kafka loop", "ingest", "trivial handler"} {
		fmt.Fprintf(w, "  %s\t%.3f\n", k, r.CPU[k])
	}
	w.Flush()
}
