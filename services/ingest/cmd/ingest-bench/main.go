// Command ingest-bench measures the ingest service's accepted events per
// second on a real broker (each checked, encoded in Avro and acknowledged
// by the broker before its 202) next to a trivial Go handler that answers
// 202 to the same requests, both under the same load generator (wrk with a
// Lua script that varies the account, so that events spread over the
// partitions), in turns, -rounds times each. It prints the ratio and the
// processor seconds per 1,000 events of each; the registry is embedded
// (srfake). Beside them it measures a handler that only produces each
// request's body to the events topic and answers 202 once the broker has
// acknowledged it: what the broker leaves for ingest to reach.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/bench"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/services/ingest"
)

// key is the bench tenant's API key.
const key = "hk_bench_ingest"

type options struct {
	brokers    []string
	conns      int
	dur        time.Duration
	rounds     int
	jsonOut    string
	cpuProfile string
}

func main() {
	var o options
	brokers := flag.String("brokers", "127.0.0.1:19092", "seed brokers")
	flag.IntVar(&o.conns, "c", 64, "wrk connections")
	flag.DurationVar(&o.dur, "d", 8*time.Second, "how long wrk runs each turn")
	flag.IntVar(&o.rounds, "rounds", 2, "turns each of the trivial handler and ingest takes")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures to this file as JSON")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of ingest's first turn to this file")
	flag.Parse()
	o.brokers = strings.Split(*brokers, ",")
	if err := run(context.Background(), o); err != nil {
		fmt.Fprintln(os.Stderr, "ingest-bench:", err)
		os.Exit(1)
	}
}

// figures are what the command measures.
type figures struct {
	Connections int     `json:"connections"`
	Ingest      float64 `json:"ingest_events_per_s"`
	Trivial     float64 `json:"trivial_handler_requests_per_s"`
	ProduceOnly float64 `json:"produce_only_handler_requests_per_s"`
	Ratio       float64 `json:"ratio"`
	IngestCPU   float64 `json:"ingest_cpu_s_per_1000_events"`
	TrivialCPU  float64 `json:"trivial_handler_cpu_s_per_1000_requests"`
}

// event is the request body; the script sets its account per request.
const event = `{"entityType":"Balance","entityId":"bal-%s","operation":"UPDATE","accountId":"%s",` +
	`"old":{"id":"bal-1","accountId":"acct","unit":"MB","total":1000,"used":400,"remaining":600},` +
	`"new":{"id":"bal-1","accountId":"acct","unit":"MB","total":1000,"used":500,"remaining":500}}`

// script POSTs the event with a different account each time, from 1,000.
var script = `counter = 0
request = function()
  counter = counter + 1
  local acct = "acct-" .. (counter % 1000)
  local body = string.format('` + event + `', acct, acct)
  return wrk.format("POST", nil, {["Authorization"] = "Bearer ` + key + `", ["Content-Type"] = "application/json"}, body)
end
`

func run(ctx context.Context, o options) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := bench.NewBroker(ctx, o.brokers, 6, quiet)
	if err != nil {
		return err
	}
	defer b.Close()
	cfg := ingest.Config{
		Config: service.Config{
			Kafka:    b.Kafka,
			Registry: service.RegistryConfig{URL: b.RegistryURL, RegisterSchemas: true, LatestTTL: time.Minute},
			Logger:   quiet,
		},
		MaxBatch: 500, ProduceTimeout: 5 * time.Second,
	}
	ingestURL, stopIngest, err := startIngest(ctx, cfg)
	if err != nil {
		return err
	}
	defer stopIngest()
	docs, err := keyDocuments()
	if err != nil {
		return err
	}
	if err := b.Put(ctx, quiet, docs...); err != nil {
		return err
	}
	if err := awaitKey(ctx, ingestURL); err != nil {
		return err
	}
	trivialURL, stopTrivial, err := startTrivial()
	if err != nil {
		return err
	}
	defer stopTrivial()
	produceURL, stopProduce, err := startProduceOnly(cfg, quiet)
	if err != nil {
		return err
	}
	defer stopProduce()

	fmt.Printf("Balance updates over %d wrk connections, %s a turn, broker %s\n", o.conns, o.dur, strings.Join(o.brokers, ","))
	var ingestSpan, trivialSpan, produceSpan bench.Span
	var ingestN, trivialN, produceN int64
	for round := range o.rounds {
		span, n, err := load(ctx, trivialURL, o, "")
		if err != nil {
			return err
		}
		trivialSpan, trivialN = trivialSpan.Add(span), trivialN+n
		fmt.Printf("  trivial handler (202 to every request):   %8.0f requests/s, %.3f CPU s per 1,000\n", span.Rate(n), span.CPUPer1000(n))
		span, n, err = load(ctx, produceURL, o, "")
		if err != nil {
			return err
		}
		produceSpan, produceN = produceSpan.Add(span), produceN+n
		fmt.Printf("  produce-only handler (body, broker's ack): %7.0f requests/s, %.3f CPU s per 1,000\n", span.Rate(n), span.CPUPer1000(n))
		profile := ""
		if round == 0 {
			profile = o.cpuProfile
		}
		span, n, err = load(ctx, ingestURL, o, profile)
		if err != nil {
			return err
		}
		ingestSpan, ingestN = ingestSpan.Add(span), ingestN+n
		fmt.Printf("  ingest (checked, Avro, broker's ack):     %8.0f events/s,   %.3f CPU s per 1,000\n", span.Rate(n), span.CPUPer1000(n))
	}
	f := figures{Connections: o.conns, Ingest: ingestSpan.Rate(ingestN), Trivial: trivialSpan.Rate(trivialN), ProduceOnly: produceSpan.Rate(produceN),
		IngestCPU: ingestSpan.CPUPer1000(ingestN), TrivialCPU: trivialSpan.CPUPer1000(trivialN)}
	f.Ratio = f.Ingest / f.Trivial
	fmt.Printf("  over %d rounds: ratio ingest / trivial handler %.2f (ingest / produce-only handler %.2f)\n", o.rounds, f.Ratio, f.Ingest/f.ProduceOnly)
	return bench.WriteJSON(o.jsonOut, f)
}

// load runs wrk against url and returns its window and the requests
// answered 202 in it.
func load(ctx context.Context, url string, o options, profile string) (bench.Span, int64, error) {
	stopProfile, err := bench.Profile(profile)
	if err != nil {
		return bench.Span{}, 0, err
	}
	defer stopProfile()
	w := bench.Start()
	rate, failed, err := bench.Wrk(ctx, bench.WrkOptions{URL: url, Lua: script, Connections: o.conns, Duration: o.dur})
	span := w.Stop()
	if err != nil {
		return bench.Span{}, 0, err
	}
	if failed > 0.001 {
		return bench.Span{}, 0, fmt.Errorf("%s: %.1f%% of the answers were not 2xx", url, 100*failed)
	}
	// wrk's own count over its run, not the window's wall time, which
	// includes starting wrk.
	n := int64(rate * o.dur.Seconds())
	span.Wall = o.dur
	return span, n, nil
}

// startIngest runs the ingest service as it runs on its own, on a
// loopback port, and returns its events URL.
func startIngest(ctx context.Context, cfg ingest.Config) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	cfg.HTTPAddr = ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ingest.Run(ctx, cfg) }()
	return "http://" + cfg.HTTPAddr + "/v1/events", func() { cancel(); <-done }, nil
}

// startTrivial serves a handler that reads the body and answers 202.
func startTrivial() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"eventId":"01JNQ7Z8X0ABCDEFGHJKMNPQRS"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/v1/events", func() { _ = srv.Close() }, nil
}

// startProduceOnly serves a handler that produces each request's body to
// the events topic, keyed like ingest keys it, with ingest's client
// options, and answers 202 once the broker has acknowledged it.
func startProduceOnly(cfg ingest.Config, log *slog.Logger) (string, func(), error) {
	opts, err := kafka.ClientOptions(cfg.Kafka, "ingest-bench", log)
	if err != nil {
		return "", nil, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(cfg.Kafka.Topics().Events), kgo.AllowIdempotentProduceCancellation())...)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cl.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			var acct struct {
				AccountID string `json:"accountId"`
			}
			_ = json.Unmarshal(body, &acct)
			err = cl.ProduceSync(r.Context(), &kgo.Record{Key: []byte("bench/" + acct.AccountID), Value: body}).FirstErr()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"eventId":"01JNQ7Z8X0ABCDEFGHJKMNPQRS"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/v1/events", func() { _ = srv.Close(); cl.Close() }, nil
}

// keyDocuments are the bench tenant and its events:write key.
func keyDocuments() ([]configstore.Document, error) {
	tenant, err := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, bench.Tenant, configstore.Tenant{Name: bench.Tenant})
	if err != nil {
		return nil, err
	}
	hash := configstore.HashAPIKey(key)
	apiKey, err := configstore.NewDocument(bench.Tenant, configstore.KindAPIKey, "key_"+hash[:12],
		configstore.APIKey{Name: "bench", Hash: hash, Prefix: key[:7], Scopes: []string{httpapi.ScopeEventsWrite}})
	if err != nil {
		return nil, err
	}
	return []configstore.Document{tenant, apiKey}, nil
}

// awaitKey posts an event until ingest accepts the key.
func awaitKey(ctx context.Context, url string) error {
	body := fmt.Sprintf(event, "acct-0", "acct-0")
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ingest did not accept the bench key within a minute (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
