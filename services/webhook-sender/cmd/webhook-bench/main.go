// Command webhook-bench measures the webhook sender's deliveries per
// second to a local HTTP sink, with signing, the attempt log and offset
// commits, next to a bare Go net/http client loop posting the same signed
// bodies to the same sink over as many connections with no Kafka (the
// limit a Go sender can reach), and prints the ratio, with wrk's requests
// per second on the same sink beside it for reference. The loop and the
// sender take turns, -rounds times each. The sink runs in a
// process of its own, so that the processor seconds per 1,000 deliveries
// are the sender's (or the loop's) alone. A third turn feeds the sink from
// Kafka with the sender's guarantees and nothing of Herald (floor.go):
// what Kafka leaves a sender on this machine. With -no-http nothing is
// posted: the sender's channel answers at once, and the Kafka loop skips
// its POST, so that what is left is the delivery engine next to Kafka
// alone. Without -brokers the broker is embedded (kfake); the registry
// always is (srfake).
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
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/pkg/bench"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/egress"
	"github.com/heraldhq/herald/pkg/envconfig"
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
	rounds         int
	noHTTP         bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 50000, "notifications to deliver")
	flag.IntVar(&o.keys, "keys", 1000, "ordering keys (keyed delivery)")
	flag.IntVar(&o.conns, "c", 64, "connections: wrk's, the loop's, and the destination's concurrency")
	flag.DurationVar(&o.dur, "d", 10*time.Second, "how long wrk and the loop run")
	flag.StringVar(&o.brokers, "brokers", "", "a real broker's address; empty runs an embedded one (kfake)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the figures to this file as JSON")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the sender's first run to this file")
	flag.IntVar(&o.rounds, "rounds", 2, "turns each of the bare loop and the sender takes")
	flag.BoolVar(&o.noHTTP, "no-http", false, "post nothing: the sender's channel answers at once and the Kafka loop skips its POST (no wrk, no bare loop), to measure the delivery engine next to Kafka alone, each over its whole run; -n defaults to 500000")
	serveSink := flag.Bool("serve-sink", false, "serve the sink on a loopback port, print its address, and run until killed")
	flag.Parse()
	if o.noHTTP && !flagSet("n") {
		// Measured over whole runs: enough records that joining the
		// group and starting up are a small part of each.
		o.n = 500000
	}
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

// flagSet reports whether the named flag was given.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
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
	// The Kafka loop (floor.go): the sink fed from Kafka with the
	// sender's guarantees and nothing of Herald; over the bare loop, and
	// the sender over it.
	KafkaLoop         float64 `json:"kafka_loop_deliveries_per_s"`
	KafkaLoopCPU      float64 `json:"kafka_loop_cpu_s_per_1000_deliveries"`
	KafkaLoopVsBare   float64 `json:"kafka_loop_vs_bare_client"`
	SenderVsKafkaLoop float64 `json:"sender_vs_kafka_loop"`
	// NoHTTP: nothing was posted (-no-http); the bare loop and wrk did
	// not run.
	NoHTTP bool `json:"no_http"`
	// Each turn's figures, in order.
	SenderRounds     []float64 `json:"sender_rounds_deliveries_per_s"`
	BareClientRounds []float64 `json:"bare_client_rounds_requests_per_s"`
	KafkaLoopRounds  []float64 `json:"kafka_loop_rounds_deliveries_per_s"`
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
	if o.noHTTP {
		return withoutHTTP(ctx, o)
	}
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

	// The loop and the sender take turns, so that a change in the
	// machine's load falls on both.
	var bare, kl, snd bench.Span
	var bareN, klN, sndN int64
	for round := range o.rounds {
		span, done, err := bareClient(ctx, sinkURL, body, o.conns, o.dur)
		if err != nil {
			return err
		}
		bare, bareN = bare.Add(span), bareN+done
		f.BareClientRounds = append(f.BareClientRounds, span.Rate(done))
		fmt.Printf("bare net/http loop (%d connections, signed):      %8.0f requests/s, %.3f CPU s per 1,000\n", o.conns, span.Rate(done), span.CPUPer1000(done))

		span, done, _, err = kafkaLoop(ctx, o, sinkURL, body)
		if err != nil {
			return err
		}
		kl, klN = kl.Add(span), klN+done
		f.KafkaLoopRounds = append(f.KafkaLoopRounds, span.Rate(done))
		fmt.Printf("Kafka loop (read, signed POST, attempt, commit): %8.0f deliveries/s, %.3f CPU s per 1,000\n", span.Rate(done), span.CPUPer1000(done))

		profile := ""
		if round == 0 {
			profile = o.cpuProfile
		}
		span, done, _, err = sender(ctx, o, sinkURL, profile)
		if err != nil {
			return err
		}
		snd, sndN = snd.Add(span), sndN+done
		f.SenderRounds = append(f.SenderRounds, span.Rate(done))
		fmt.Printf("webhook sender (%d notifications, %d keys):  %8.0f deliveries/s, %.3f CPU s per 1,000 (signed, attempts logged, offsets committed)\n", o.n, o.keys, span.Rate(done), span.CPUPer1000(done))
	}
	f.BareClient, f.BareClientCPU = bare.Rate(bareN), bare.CPUPer1000(bareN)
	f.Sender, f.SenderCPU = snd.Rate(sndN), snd.CPUPer1000(sndN)
	f.KafkaLoop, f.KafkaLoopCPU = kl.Rate(klN), kl.CPUPer1000(klN)
	f.Ratio, f.RatioWrk = f.Sender/f.BareClient, f.Sender/f.Wrk
	f.KafkaLoopVsBare, f.SenderVsKafkaLoop = f.KafkaLoop/f.BareClient, f.Sender/f.KafkaLoop
	fmt.Printf("over %d rounds: bare loop %.0f requests/s, sender %.0f deliveries/s; ratio to the bare loop: %.2f (to wrk: %.2f)\n",
		o.rounds, f.BareClient, f.Sender, f.Ratio, f.RatioWrk)
	fmt.Printf("  Kafka loop %.0f deliveries/s: %.2f of the bare loop; the sender is %.2f of it\n", f.KafkaLoop, f.KafkaLoopVsBare, f.SenderVsKafkaLoop)
	return bench.WriteJSON(o.jsonOut, f)
}

// withoutHTTP is the -no-http run: the Kafka loop and the sender take
// turns, neither posting anything. Kafka alone can be done with a short
// run before its first commit, so the figures are each consumer's whole
// run, from its start (joining the group included) to every notification
// committed.
func withoutHTTP(ctx context.Context, o options) error {
	f := figures{Notifications: o.n, Keys: o.keys, Connections: o.conns, NoHTTP: true}
	var kl, snd bench.Span
	var n int64
	for round := range o.rounds {
		_, _, whole, err := kafkaLoop(ctx, o, "", nil)
		if err != nil {
			return err
		}
		kl, n = kl.Add(whole), n+int64(o.n)
		f.KafkaLoopRounds = append(f.KafkaLoopRounds, whole.Rate(int64(o.n)))
		fmt.Printf("Kafka loop, no POST (read, attempt, commit):     %8.0f deliveries/s from its start, %.4f CPU s per 1,000\n", whole.Rate(int64(o.n)), whole.CPUPer1000(int64(o.n)))
		profile := ""
		if round == 0 {
			profile = o.cpuProfile
		}
		// The destination's URL is never dialled.
		_, _, whole, err = sender(ctx, o, "http://127.0.0.1:9/hook", profile)
		if err != nil {
			return err
		}
		snd = snd.Add(whole)
		f.SenderRounds = append(f.SenderRounds, whole.Rate(int64(o.n)))
		fmt.Printf("delivery engine, a channel that answers at once: %8.0f deliveries/s from its start, %.4f CPU s per 1,000 (attempts logged, offsets committed)\n", whole.Rate(int64(o.n)), whole.CPUPer1000(int64(o.n)))
	}
	f.Sender, f.SenderCPU = snd.Rate(n), snd.CPUPer1000(n)
	f.KafkaLoop, f.KafkaLoopCPU = kl.Rate(n), kl.CPUPer1000(n)
	f.SenderVsKafkaLoop = f.Sender / f.KafkaLoop
	fmt.Printf("over %d rounds, no HTTP: the Kafka loop at %.4f CPU s per 1,000 deliveries, the engine at %.4f; from their starts %.0f and %.0f deliveries/s\n",
		o.rounds, f.KafkaLoopCPU, f.SenderCPU, f.KafkaLoop, f.Sender)
	return bench.WriteJSON(o.jsonOut, f)
}

// answeringSender is the webhook sender with its channel replaced by one
// that answers every attempt with 204 at once.
func answeringSender(ctx context.Context, c webhooksender.Config) (*service.Sender, error) {
	base, err := service.Start(ctx, "webhook-sender", c.Config)
	if err != nil {
		return nil, err
	}
	snd, err := service.NewSender(base, service.SenderOptions{
		Channel: webhooksender.Channel, Deliver: answering{}, Config: c.Delivery,
		Group: delivery.Group{ID: c.Group},
	})
	if err != nil {
		base.Close()
		return nil, err
	}
	return snd, nil
}

// answering is a channel that makes no request and reports each attempt
// delivered.
type answering struct{}

func (answering) Deliver(context.Context, *delivery.Delivery) (delivery.Response, error) {
	return delivery.Response{StatusCode: http.StatusNoContent}, nil
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
				if err := signedPost(ctx, cl, url, body, id); err != nil {
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

// signedPost posts body to url as message id, signed now as the sender
// signs.
func signedPost(ctx context.Context, cl *http.Client, url string, body []byte, id string) error {
	now := time.Now()
	sig, err := webhook.Sign([]string{secret}, id, now, body)
	if err != nil {
		return err
	}
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

// notificationsOnBroker writes o.n notifications for the sink to topics of
// their own on the broker (an embedded one without -brokers), keyed over
// o.keys keys, and returns the broker and what releases it.
func notificationsOnBroker(ctx context.Context, o options, log *slog.Logger) (*bench.Broker, func(), error) {
	seeds := []string{o.brokers}
	var closers []func()
	stop := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	if o.brokers == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, cluster.Close)
		seeds = cluster.ListenAddrs()
	}
	b, err := bench.NewBroker(ctx, seeds, 6, log)
	if err != nil {
		stop()
		return nil, nil, err
	}
	closers = append(closers, b.Close)
	if err := b.ProduceNotifications(ctx, o.n, o.keys, "sink", true); err != nil {
		stop()
		return nil, nil, err
	}
	return b, stop, nil
}

// sender produces n notifications for the sink and runs the webhook sender
// until it has delivered them all and committed their offsets.
func sender(ctx context.Context, o options, sinkURL, cpuProfile string) (bench.Span, int64, bench.Span, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, stop, err := notificationsOnBroker(ctx, o, log)
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	defer stop()
	doc, err := configstore.NewDocument(bench.Tenant, configstore.KindDestination, "sink", configstore.Destination{
		Type: "webhook", Name: "sink", Concurrency: o.conns, Webhook: &configstore.WebhookDestination{URL: sinkURL,
			Secrets: []configstore.SigningSecret{{Secret: secret}}},
	})
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	if err := b.Put(ctx, log, doc); err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}

	c := webhooksender.Config{
		Config: service.Config{Kafka: b.Kafka, Registry: service.RegistryConfig{URL: b.RegistryURL, RegisterSchemas: true, LatestTTL: time.Minute},
			HTTPAddr: "127.0.0.1:0", Logger: log},
		Egress: egress.Config{AllowLoopback: true, AllowHTTP: true, Ports: "any"},
		Group:  b.Kafka.TopicPrefix + "webhook-sender", Timeout: 10 * time.Second,
	}
	if err := envconfig.Defaults(&c.Delivery); err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	c.Delivery.CommitInterval = 200 * time.Millisecond
	var snd *service.Sender
	if o.noHTTP {
		snd, err = answeringSender(ctx, c)
	} else {
		snd, err = webhooksender.New(ctx, c)
	}
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	defer snd.Close()
	wait, stop := context.WithTimeout(ctx, 5*time.Minute)
	defer stop()
	span, done, whole, err := bench.Consume(wait, kadm.NewClient(b.Client), c.Group, b.Kafka.Topics().Notifications, int64(o.n), cpuProfile, snd.Run)
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("not every notification delivered and committed within 5 minutes")
	}
	if err != nil {
		return bench.Span{}, 0, bench.Span{}, err
	}
	return span, done, whole, nil
}
