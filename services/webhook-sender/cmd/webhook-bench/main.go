// Command webhook-bench measures the webhook sender's deliveries per
// second to a local HTTP sink, with signing, the attempt log and offset
// commits, next to a bare Go net/http client loop posting the same signed
// bodies to the same sink over as many connections with no Kafka (the
// limit a Go sender can reach), and prints the ratio, with wrk's requests
// per second on the same sink beside it for reference. The sink runs in a
// process of its own, so that the processor seconds per 1,000 deliveries
// are the sender's (or the loop's) alone. Without -brokers the broker is
// embedded (kfake); the registry always is (srfake).
package main

import (
	"bufio"
	"bytes"
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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/bench"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/webhook"
	webhooksender "github.com/heraldhq/herald/services/webhook-sender"
)

// secret signs every body, the sender's and the loop's.
const secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

type options struct {
	n, keys, conns int
	dur            time.Duration
	brokers        string
	jsonOut        string
	cpuProfile     string
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 50000, "notifications to deliver")
	flag.IntVar(&o.keys, "keys", 1000, "ordering keys (keyed delivery)")
	flag.IntVar(&o.conns, "c", 64, "connections: wrk's, the loop's, and the destination's concurrency")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "how long wrk and the loop run")
	flag.StringVar(&o.brokers, "brokers", "", "a real broker's address; empty runs an embedded one (kfake)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures to this file as JSON")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the sender's run to this file")
	serveSink := flag.Bool("serve-sink", false, "serve the sink on a loopback port, print its address, and run until killed")
	flag.Parse()
	if *serveSink {
		if err := sink(); err != nil {
			fmt.Fprintln(os.Stderr, "webhook-bench sink:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-bench:", err)
		os.Exit(1)
	}
}

// figures are what the command measures.
type figures struct {
	Notifications int     `json:"notifications"`
	Keys          int     `json:"keys"`
	Connections   int     `json:"connections"`
	Sender        float64 `json:"sender_deliveries_per_s"`
	BareClient    float64 `json:"bare_client_requests_per_s"`
	Wrk           float64 `json:"wrk_requests_per_s"`
	Ratio         float64 `json:"ratio"`
	RatioWrk      float64 `json:"ratio_to_wrk"`
	SenderCPU     float64 `json:"sender_cpu_s_per_1000_deliveries"`
	BareClientCPU float64 `json:"bare_client_cpu_s_per_1000_requests"`
}

// sink answers every POST with 204, in this process, until it is killed.
func sink() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
}

// startSink runs this command as the sink in a child process and returns
// its URL and a function that stops it.
func startSink() (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-serve-sink")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("the sink printed no address: %w", err)
	}
	return "http://" + addr[:len(addr)-1] + "/hook", stop, nil
}

func run(o options) error {
	ctx := context.Background()
	sinkURL, stopSink, err := startSink()
	if err != nil {
		return err
	}
	defer stopSink()
	sample := notification.Sample()
	body, err := sample.JSON()
	if err != nil {
		return err
	}
	f := figures{Notifications: o.n, Keys: o.keys, Connections: o.conns}

	f.Wrk, _, err = bench.Wrk(ctx, bench.WrkOptions{URL: sinkURL, Connections: o.conns, Duration: o.dur,
		Lua: bench.PostLua(body, map[string]string{"Content-Type": "application/json"})})
	if err != nil {
		return err
	}
	fmt.Printf("wrk (%d connections, %s) against the sink:        %8.0f requests/s\n", o.conns, o.dur, f.Wrk)

	span, done, err := bareClient(ctx, sinkURL, body, o.conns, o.dur)
	if err != nil {
		return err
	}
	f.BareClient, f.BareClientCPU = span.Rate(done), span.CPUPer1000(done)
	fmt.Printf("bare net/http loop (%d connections, signed):      %8.0f requests/s, %.3f CPU s per 1,000\n", o.conns, f.BareClient, f.BareClientCPU)

	span, done, err = sender(ctx, o, sinkURL)
	if err != nil {
		return err
	}
	f.Sender, f.SenderCPU = span.Rate(done), span.CPUPer1000(done)
	f.Ratio, f.RatioWrk = f.Sender/f.BareClient, f.Sender/f.Wrk
	fmt.Printf("webhook sender (%d notifications, %d keys):  %8.0f deliveries/s, %.3f CPU s per 1,000 (signed, attempts logged, offsets committed)\n", o.n, o.keys, f.Sender, f.SenderCPU)
	fmt.Printf("ratio to the bare loop: %.2f (to wrk: %.2f)\n", f.Ratio, f.RatioWrk)
	return bench.WriteJSON(o.jsonOut, f)
}

// bareClient posts body, signed as the sender signs it, to url from conns
// goroutines sharing one client with as many connections, for dur.
func bareClient(ctx context.Context, url string, body []byte, conns int, dur time.Duration) (bench.Span, int64, error) {
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	var (
		sent     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	w := bench.Start()
	for g := range conns {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := notification.ID("bench", strconv.Itoa(g), strconv.Itoa(i))
				now := time.Now()
				sig, err := webhook.Sign([]string{secret}, id, now, body)
				if err == nil {
					err = post(ctx, cl, url, body, id, now, sig)
				}
				if err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err })
					}
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	span := w.Stop()
	if firstErr != nil {
		return bench.Span{}, 0, fmt.Errorf("bare client: %w", firstErr)
	}
	return span, sent.Load(), nil
}

func post(ctx context.Context, cl *http.Client, url string, body []byte, id string, now time.Time, sig string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Herald-Webhooks/1")
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the sink answered %s", resp.Status)
	}
	return nil
}

// sender produces n notifications for the sink and runs the webhook sender
// until it has delivered them all and committed their offsets.
func sender(ctx context.Context, o options, sinkURL string) (bench.Span, int64, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	seeds := []string{o.brokers}
	prefix := "bench."
	if o.brokers == "" {
		broker, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return bench.Span{}, 0, err
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
		return bench.Span{}, 0, err
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, cl, kc); err != nil {
		return bench.Span{}, 0, err
	}
	src, _ := sr.NewClient(sr.URLs(reg.URL()))
	registry := avro.NewRegistry(src, time.Minute)
	t := kc.Topics()
	if err := service.RegisterSchemas(ctx, registry, t); err != nil {
		return bench.Span{}, 0, err
	}
	if err := putDestination(ctx, opts, t.Config, log, sinkURL, o.conns); err != nil {
		return bench.Span{}, 0, err
	}
	if err := produce(ctx, cl, registry, t, o.n, o.keys); err != nil {
		return bench.Span{}, 0, err
	}

	c := webhooksender.Config{
		Config: service.Config{Kafka: kc, Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Minute},
			HTTPAddr: "127.0.0.1:0", Logger: log},
		Egress: egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"},
		Group:  prefix + "webhook-sender", Timeout: 10 * time.Second,
	}
	if err := envconfig.Defaults(&c.Delivery); err != nil {
		return bench.Span{}, 0, err
	}
	c.Delivery.CommitInterval = 200 * time.Millisecond
	snd, err := webhooksender.New(ctx, c)
	if err != nil {
		return bench.Span{}, 0, err
	}
	defer snd.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- snd.Run(rctx) }()
	stopProfile, err := bench.Profile(o.cpuProfile)
	if err != nil {
		return bench.Span{}, 0, err
	}
	defer stopProfile()
	wait, stop := context.WithTimeout(ctx, 5*time.Minute)
	defer stop()
	span, done, err := bench.AwaitCommitted(wait, kadm.NewClient(cl), c.Group, t.Notifications, int64(o.n), stopped)
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("not every notification delivered and committed within 5 minutes")
	}
	if err != nil {
		return bench.Span{}, 0, err
	}
	cancel()
	<-stopped
	return span, done, nil
}

// putDestination stores the bench tenant's webhook destination to the sink.
func putDestination(ctx context.Context, opts []kgo.Opt, topic string, log *slog.Logger, sinkURL string, conns int) error {
	store, err := configstore.Open(opts, topic, log)
	if err != nil {
		return err
	}
	defer store.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = store.Run(sctx) }()
	if err := store.WaitCaughtUp(ctx); err != nil {
		return err
	}
	doc, _ := configstore.NewDocument("bench", configstore.KindDestination, "sink", configstore.Destination{
		Type: "webhook", Name: "sink", Concurrency: conns, Webhook: &configstore.WebhookDestination{URL: sinkURL,
			Secrets: []configstore.SigningSecret{{Secret: secret}}},
	})
	_, err = store.Put(ctx, doc, 0)
	return err
}

// produce writes n notifications to the sink over keys ordering keys.
func produce(ctx context.Context, cl *kgo.Client, registry *avro.Registry, t kafka.Topics, n, keys int) error {
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
	return nil
}
