// Command webhook-bench measures the webhook sender's deliveries per
// second against a local HTTP sink, with signing, the attempt log and
// offset commits, next to wrk's requests per second against the same sink
// in the same run, and prints the ratio. The broker and registry are
// embedded (kfake, srfake), so it needs nothing but Go and wrk.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

func main() {
	n := flag.Int("n", 50000, "notifications to deliver")
	keys := flag.Int("keys", 1000, "ordering keys (keyed delivery)")
	conns := flag.Int("c", 64, "wrk connections")
	dur := flag.Duration("d", 10*time.Second, "wrk duration")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the sender's run to this file")
	flag.StringVar(&brokers, "brokers", "", "a real broker's address; empty runs an embedded one (kfake)")
	flag.Parse()
	cpuProfile = *profile
	if err := run(*n, *keys, *conns, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-bench:", err)
		os.Exit(1)
	}
}

var (
	cpuProfile string
	brokers    string
)

func run(n, keys, conns int, dur time.Duration) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var hits atomic.Int64
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sink := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = sink.Serve(sinkLn) }()
	defer sink.Close()
	sinkURL := "http://" + sinkLn.Addr().String() + "/hook"

	sample, _ := notification.Sample().JSON()
	wrkRate, err := runWrk(sinkURL, sample, conns, dur)
	if err != nil {
		return err
	}

	seeds := []string{brokers}
	prefix := "bench."
	if brokers == "" {
		broker, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return err
		}
		defer broker.Close()
		seeds = broker.ListenAddrs()
	} else {
		prefix = fmt.Sprintf("bench-%d.", time.Now().UnixNano())
	}
	reg := srfake.New()
	defer reg.Close()
	kc := kafka.Config{Brokers: seeds, TopicPrefix: prefix, Partitions: 6, ReplicationFactor: 1, CreateTopics: true}
	opts, _ := kafka.ClientOptions(kc, "bench", log)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, kc); err != nil {
		return err
	}
	src, _ := sr.NewClient(sr.URLs(reg.URL()))
	registry := avro.NewRegistry(src, time.Minute)
	t := kc.Topics()
	if err := service.RegisterSchemas(ctx, registry, t); err != nil {
		return err
	}
	store, err := configstore.Open(opts, t.Config, log)
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = store.Run(sctx) }()
	if err := store.WaitCaughtUp(ctx); err != nil {
		return err
	}
	doc, _ := configstore.NewDocument("bench", configstore.KindDestination, "sink", configstore.Destination{
		Type: "webhook", Name: "sink", Concurrency: conns, Webhook: &configstore.WebhookDestination{URL: sinkURL,
			Secrets: []configstore.SigningSecret{{Secret: "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}},
	})
	if _, err := store.Put(ctx, doc, 0); err != nil {
		return err
	}
	schema, err := registry.Latest(ctx, t.Notifications+"-herald.Notification")
	if err != nil {
		return err
	}
	var recs []*kgo.Record
	for i := range n {
		nt := *notification.Sample()
		nt.TenantID, nt.OrderingKey, nt.Destinations = "bench", "acct-"+strconv.Itoa(i%keys), []string{"sink"}
		nt.ID = notification.ID("bench", strconv.Itoa(i), "rule")
		v, err := schema.Encode(&nt)
		if err != nil {
			return err
		}
		recs = append(recs, &kgo.Record{Topic: t.Notifications, Key: event.RecordKey("bench", nt.OrderingKey), Value: v})
		if len(recs) == 1000 || i == n-1 {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return err
			}
			recs = recs[:0]
		}
	}

	c := webhooksender.Config{
		Config: service.Config{Kafka: kc, Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Minute},
			HTTPAddr: "127.0.0.1:0", Logger: log},
		Egress: egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"},
		Group:  "bench-webhook-sender", Timeout: 10 * time.Second,
	}
	if err := envconfig.Defaults(&c.Delivery); err != nil {
		return err
	}
	c.Delivery.CommitInterval = 200 * time.Millisecond
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	before := hits.Load()
	snd, err := webhooksender.New(ctx, c)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- snd.Run(rctx) }()

	// The clock starts at the first delivery, so joining the group and
	// catching up with the configuration are not counted; it stops once
	// every notification is delivered and its offset committed.
	for hits.Load() == before {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if time.Now().After(deadline) {
			cancel()
			return errors.New("not every notification delivered and committed within 5 minutes")
		}
		if hits.Load()-before >= int64(n) {
			offs, err := adm.FetchOffsets(ctx, c.Group)
			if err == nil {
				var committed int64
				offs.Each(func(o kadm.OffsetResponse) {
					if o.Topic == t.Notifications {
						committed += o.At
					}
				})
				if committed >= int64(n) {
					break
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	snd.Close()

	sender := float64(n) / elapsed.Seconds()
	fmt.Printf("wrk (%d connections, %s) against the sink:  %8.0f requests/s\n", conns, dur, wrkRate)
	fmt.Printf("webhook sender (%d notifications, %d keys):   %8.0f deliveries/s (signed, attempts logged, offsets committed)\n", n, keys, sender)
	fmt.Printf("ratio: %.2f\n", sender/wrkRate)
	return nil
}

// runWrk posts body to url with wrk and returns its requests per second.
func runWrk(url string, body []byte, conns int, dur time.Duration) (float64, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return 0, errors.New("wrk is not installed (make bench-webhook installs it)")
	}
	dir, err := os.MkdirTemp("", "webhook-bench")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return 0, err
	}
	out, err := exec.Command("wrk", "-t", "2", "-c", strconv.Itoa(conns), "-d", dur.String(), "-s", script, url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
