// Command eventbridge-bench measures the EventBridge sender at saturation
// against a local stand-in for PutEvents (the one the tests use, with a
// fixed latency per call): notifications per second and mean entries per
// PutEvents call, with the attempt log and offset commits, next to a loop
// that calls PutEvents directly with full batches of the same entries
// against the same stand-in in the same run, and the ratio. The broker and
// registry are embedded (kfake, srfake) unless -brokers names a real one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/heraldhq/herald/pkg/bench"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/notification"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
	"github.com/heraldhq/herald/services/eventbridge-sender/internal/eventbridgetest"
)

const busARN = "arn:aws:events:eu-west-1:123456789012:event-bus/bench"

type options struct {
	n, keys, calls int
	latency        time.Duration
	brokers        string
	unordered      bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 50000, "notifications to deliver")
	flag.IntVar(&o.keys, "keys", 1000, "ordering keys (keyed delivery)")
	flag.BoolVar(&o.unordered, "unordered", false, "deliver unordered rather than keyed")
	flag.IntVar(&o.calls, "calls", 16, "PutEvents calls in flight (the sender's HERALD_EVENTBRIDGE_CALLS, the loop's callers)")
	flag.DurationVar(&o.latency, "latency", 5*time.Millisecond, "the stand-in's time to answer a call")
	flag.StringVar(&o.brokers, "brokers", "", "a real broker's address; empty runs an embedded one (kfake)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "eventbridge-bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	standIn := eventbridgetest.New(nil, eventbridgetest.Latency(o.latency), eventbridgetest.CountOnly())
	defer standIn.Close()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": standIn.URL, "AWS_ACCESS_KEY_ID": "AKIAHERALDBENCH00001", "AWS_SECRET_ACCESS_KEY": "bench",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
	} {
		os.Setenv(k, v)
	}

	direct, err := directLoop(ctx, o, standIn)
	if err != nil {
		return err
	}
	sender, perCall, err := senderRun(ctx, o, standIn, log)
	if err != nil {
		return err
	}
	mode := "keyed, " + strconv.Itoa(o.keys) + " keys"
	if o.unordered {
		mode = "unordered"
	}
	fmt.Printf("stand-in answering each PutEvents call in %s; %d calls in flight\n", o.latency, o.calls)
	fmt.Printf("PutEvents loop, full batches of %d:            %8.0f entries/s\n", eventbridgesender.MaxEntries, direct)
	fmt.Printf("eventbridge sender (%d notifications, %s): %8.0f notifications/s, %.2f entries per PutEvents call (attempts logged, offsets committed)\n",
		o.n, mode, sender, perCall)
	fmt.Printf("ratio: %.2f\n", sender/direct)
	return nil
}

// entry is the entry both runs send: a sample notification in the totogi
// format, as the sender builds it.
func entry() (types.PutEventsRequestEntry, error) {
	n := notification.Sample()
	detail, err := eventbridgesender.Detail(n, notification.FormatTotogi)
	if err != nil {
		return types.PutEventsRequestEntry{}, err
	}
	return types.PutEventsRequestEntry{
		EventBusName: aws.String(busARN), Source: aws.String(eventbridgesender.DefaultSource),
		DetailType: aws.String(n.Name), Detail: aws.String(string(detail)), Time: aws.Time(n.CreatedAt),
	}, nil
}

// directLoop puts n entries in full batches from o.calls callers and
// returns the entries per second.
func directLoop(ctx context.Context, o options, standIn *eventbridgetest.Server) (float64, error) {
	cfg, err := eventbridgesender.LoadAWSConfig(ctx, o.calls)
	if err != nil {
		return 0, err
	}
	client := eventbridge.NewFromConfig(cfg, func(opts *eventbridge.Options) { opts.Region = "eu-west-1" })
	e, err := entry()
	if err != nil {
		return 0, err
	}
	batch := make([]types.PutEventsRequestEntry, eventbridgesender.MaxEntries)
	for i := range batch {
		batch[i] = e
	}
	batches := o.n / eventbridgesender.MaxEntries
	work := make(chan struct{}, batches)
	for range batches {
		work <- struct{}{}
	}
	close(work)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	for range o.calls {
		wg.Go(func() {
			for range work {
				out, err := client.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: batch})
				if err == nil && out.FailedEntryCount != 0 {
					err = errors.New("the stand-in failed entries")
				}
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(batches*eventbridgesender.MaxEntries) / time.Since(start).Seconds(), nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// senderRun delivers n notifications through the sender and returns the
// notifications per second and the mean entries per call.
func senderRun(ctx context.Context, o options, standIn *eventbridgetest.Server, log *slog.Logger) (float64, float64, error) {
	seeds := []string{o.brokers}
	if o.brokers == "" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return 0, 0, err
		}
		defer cluster.Close()
		seeds = cluster.ListenAddrs()
	}
	b, err := bench.NewBroker(ctx, seeds, 6, log)
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	doc, err := configstore.NewDocument(bench.Tenant, configstore.KindDestination, "bus", configstore.Destination{
		Type: eventbridgesender.Channel, Name: "bus", Concurrency: 1000,
		EventBridge: &configstore.EventBridgeDestination{EventBusARN: busARN},
	})
	if err != nil {
		return 0, 0, err
	}
	if err := b.Put(ctx, log, doc); err != nil {
		return 0, 0, err
	}
	if err := b.ProduceNotifications(ctx, o.n, o.keys, "bus", !o.unordered); err != nil {
		return 0, 0, err
	}

	var c eventbridgesender.Config
	if err := envconfig.Defaults(&c); err != nil {
		return 0, 0, err
	}
	c.Kafka, c.Registry.URL, c.Registry.LatestTTL, c.HTTPAddr, c.Logger = b.Kafka, b.RegistryURL, time.Minute, "127.0.0.1:0", log
	c.Group, c.Calls = "bench-eventbridge-sender", o.calls
	c.Delivery.CommitInterval = 200 * time.Millisecond
	callsBefore, entriesBefore := standIn.Counts()
	snd, err := eventbridgesender.New(ctx, c)
	if err != nil {
		return 0, 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- snd.Run(rctx) }()

	// The clock starts at the first call, so joining the group and
	// catching up with the configuration are not counted; it stops once
	// every notification is on the bus and its offset committed.
	for {
		if calls, _ := standIn.Counts(); calls > callsBefore {
			break
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	adm := kadm.NewClient(b.Client)
	deadline := start.Add(5 * time.Minute)
	for {
		if time.Now().After(deadline) {
			cancel()
			return 0, 0, errors.New("not every notification delivered and committed within 5 minutes")
		}
		if _, entries := standIn.Counts(); entries-entriesBefore >= int64(o.n) {
			if committed, err := bench.Committed(ctx, adm, c.Group, b.Kafka.Topics().Notifications); err == nil && committed >= int64(o.n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	calls, entries := standIn.Counts()
	cancel()
	<-done
	snd.Close()
	return float64(o.n) / elapsed.Seconds(), float64(entries-entriesBefore) / float64(calls-callsBefore), nil
}
