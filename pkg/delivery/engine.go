package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	avroschema "github.com/twmb/avro"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/telemetry"
)

// Config is the engine's configuration, from HERALD_* variables shared by
// every sender.
type Config struct {
	// RetrySchedule is the wait before each attempt (comma-separated Go
	// durations); a destination may set its own.
	RetrySchedule string `env:"RETRY_SCHEDULE" envDefault:"0s,5s,5m,30m,2h,5h,10h,10h"`
	// RetryInMemory is the longest wait kept in memory: a delivery whose
	// next attempt is further away goes to the retry topic (unordered) or
	// is parked there with the rest of its key (keyed).
	RetryInMemory time.Duration `env:"RETRY_IN_MEMORY" envDefault:"10s"`
	// RetryHold is how long a retry-topic entry that is not yet due is
	// held in memory before it is written back to the topic's end, which
	// bounds how far the retry topic's committed offset lags.
	RetryHold time.Duration `env:"RETRY_HOLD" envDefault:"1m"`
	// Concurrency bounds the attempts in flight in this process.
	Concurrency int `env:"DELIVERY_CONCURRENCY" envDefault:"256"`
	// MaxPending bounds the records of one partition that are read but
	// not finished; fetching pauses beyond it.
	MaxPending int `env:"DELIVERY_MAX_PENDING" envDefault:"2000"`
	// CommitInterval is how often finished offsets are committed.
	CommitInterval time.Duration `env:"DELIVERY_COMMIT_INTERVAL" envDefault:"1s"`
	// DestinationConcurrency bounds the attempts in flight to one
	// destination that does not set its own bound.
	DestinationConcurrency int `env:"DESTINATION_CONCURRENCY" envDefault:"32"`
	// DisableAfter and DisableMinAttempts: a destination that has failed
	// without a success for DisableAfter, over at least DisableMinAttempts
	// attempts, is disabled.
	DisableAfter       time.Duration `env:"DESTINATION_DISABLE_AFTER" envDefault:"120h"`
	DisableMinAttempts int           `env:"DESTINATION_DISABLE_MIN_ATTEMPTS" envDefault:"20"`
}

// Validate checks the configuration, naming the variable at fault.
func (c Config) Validate() error {
	if _, err := ParseSchedule(c.RetrySchedule); err != nil {
		return fmt.Errorf("HERALD_RETRY_SCHEDULE: %w", err)
	}
	switch {
	case c.RetryInMemory < 0:
		return errors.New("HERALD_RETRY_IN_MEMORY: must not be negative")
	case c.RetryHold <= 0:
		return errors.New("HERALD_RETRY_HOLD: must be positive")
	case c.Concurrency < 1:
		return errors.New("HERALD_DELIVERY_CONCURRENCY: must be at least 1")
	case c.MaxPending < 1:
		return errors.New("HERALD_DELIVERY_MAX_PENDING: must be at least 1")
	case c.CommitInterval <= 0:
		return errors.New("HERALD_DELIVERY_COMMIT_INTERVAL: must be positive")
	case c.DestinationConcurrency < 1:
		return errors.New("HERALD_DESTINATION_CONCURRENCY: must be at least 1")
	case c.DisableAfter <= 0:
		return errors.New("HERALD_DESTINATION_DISABLE_AFTER: must be positive")
	case c.DisableMinAttempts < 1:
		return errors.New("HERALD_DESTINATION_DISABLE_MIN_ATTEMPTS: must be at least 1")
	}
	return nil
}

// Group says how a sender's replicas share the work.
type Group struct {
	// ID is the consumer group.
	ID string
	// InstanceID, when set, makes the member static: a replica that
	// restarts with the same id takes its partitions back at once instead
	// of waiting for the session to time out.
	InstanceID string
}

// Topics are the topics an engine reads and writes.
type Topics struct {
	// Notifications is read; DestinationDisabled notices are written to it.
	Notifications string
	// Retry and DLQ are the channel's own retry and dead-letter topics.
	Retry, DLQ string
	// Deliveries is the attempt log.
	Deliveries string
}

// Subjects are the registry subjects of the records the engine writes.
type Subjects struct {
	Notification, Attempt string
}

// Registry decodes the notifications the engine reads and gives the
// schemas of the records it writes (*avro.Registry is one).
type Registry interface {
	Decode(ctx context.Context, b []byte, v any) (*avroschema.Schema, error)
	Latest(ctx context.Context, subject string) (avro.Schema, error)
}

// Destinations is the tenants' configuration as the engine reads it: where
// a notification goes, and, to disable a failing destination and tell the
// tenant, the documents it changes (*configstore.Store is one).
type Destinations interface {
	// Destination resolves a destination id or subscription reference.
	Destination(tenant, id string) (configstore.Destination, int64, bool)
	Get(tenant, kind, id string) (configstore.Document, bool)
	List(tenant, kind string) []configstore.Document
	Put(ctx context.Context, doc configstore.Document, expect int64) (configstore.Document, error)
}

// Clock tells the time and waits; tests pass one they move by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options are what an engine is made of. Channel, Topics, Subjects, Kafka,
// Registry and Destinations are required.
type Options struct {
	// Channel is the destination type the engine serves, such as
	// "webhook"; Deliver gets the deliveries to destinations of that type.
	Channel string
	Deliver Channel
	Config  Config
	Group   Group
	Topics  Topics
	// Subjects name the schemas of the notifications and attempts written.
	Subjects Subjects
	// Kafka are the options every client of the engine starts from: seeds,
	// TLS, SASL, logging (pkg/kafka builds them).
	Kafka        []kgo.Opt
	Registry     Registry
	Destinations Destinations
	// Log, Meter and Clock default to discarding, a no-op meter and the
	// system clock.
	Log   *slog.Logger
	Meter metric.Meter
	Clock Clock
	// Tracer, when set, gives each attempt a span that continues the
	// notification record's trace; nil means tracing is off.
	Tracer trace.Tracer
}

// Engine delivers the notifications of one channel.
type Engine struct {
	log      *slog.Logger
	cfg      Config
	schedule Schedule
	channel  string
	ch       Channel
	group    Group
	topics   Topics
	subjects Subjects
	kafka    []kgo.Opt
	reg      Registry
	dests    Destinations
	clock    Clock
	cl       *kgo.Client

	sem     chan struct{}
	limits  *limits
	health  *health
	handler Handler // notifications
	retryH  Handler // retry entries
	// held fails Ready while a record waits out the world's fault.
	held            httpapi.Condition
	countUnreadable func(context.Context)
	tracer          trace.Tracer
	lag             *kafka.Lag
	metrics         deliveryMetrics

	// attemptCtx outlives revocations: an attempt under way finishes (its
	// channel's timeout bounds it) so that its outcome is known.
	attemptCtx    context.Context
	cancelAttempt context.CancelFunc

	mu     sync.Mutex
	parts  map[topicPartition]*partition
	parks  map[int32]*parkTable
	commit sync.Mutex // one commit at a time
}

type topicPartition struct {
	topic string
	id    int32
}

// New returns an engine that delivers with o.Deliver the notifications
// for destinations of type o.Channel.
func New(o Options) (*Engine, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Channel == "" || o.Deliver == nil || o.Registry == nil || o.Destinations == nil || o.Group.ID == "" ||
		o.Topics.Notifications == "" || o.Topics.Retry == "" || o.Topics.DLQ == "" || o.Topics.Deliveries == "" {
		return nil, errors.New("delivery: Channel, Deliver, Group.ID, Topics, Registry and Destinations are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = noop.NewMeterProvider().Meter("")
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	schedule, _ := ParseSchedule(o.Config.RetrySchedule)
	e := &Engine{
		log: o.Log.With("channel", o.Channel), cfg: o.Config, schedule: schedule,
		channel: o.Channel, ch: o.Deliver, group: o.Group, topics: o.Topics, subjects: o.Subjects,
		kafka: slices.Clip(o.Kafka), reg: o.Registry, dests: o.Destinations, clock: o.Clock,
		sem:   make(chan struct{}, o.Config.Concurrency),
		parts: map[topicPartition]*partition{}, parks: map[int32]*parkTable{},
	}
	e.limits = newLimits(o.Config.DestinationConcurrency)
	e.health = newHealth(o.Config.DisableAfter, o.Config.DisableMinAttempts, o.Clock)
	e.attemptCtx, e.cancelAttempt = context.WithCancel(context.Background())
	channelAttr := metric.WithAttributes(attribute.String("channel", o.Channel))
	unreadable := telemetry.Counter(o.Meter, "herald.delivery.unreadable", "Records no handler can read (bad bytes, a handler panic), dead-lettered: the record's fault.")
	transient := telemetry.Counter(o.Meter, "herald.delivery.transient_retries", "Records retried in place after a failure that should pass (registry or broker out of reach): the world's fault.")
	e.countUnreadable = func(ctx context.Context) { unreadable.Add(ctx, 1, channelAttr) }
	e.tracer = o.Tracer
	e.lag = kafka.NewLag(o.Meter, o.Group.ID)
	e.metrics = newDeliveryMetrics(o.Meter, o.Channel)
	mws := []Middleware{
		DeadLetter(e.deadLetterRecord),
		RetryTransient(e.log, 500*time.Millisecond, &e.held, func(ctx context.Context) { transient.Add(ctx, 1, channelAttr) }),
		Unreadable(), Recover(e.log),
	}
	e.handler = Chain(e.handleNotification, mws...)
	e.retryH = Chain(e.handleRetry, mws...)

	opts := []kgo.Opt{
		kgo.ConsumerGroup(o.Group.ID),
		kgo.ConsumeTopics(o.Topics.Notifications, o.Topics.Retry),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Notifications are written in transactions; aborted ones must
		// never be delivered.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// The range balancer gives a member the same partition numbers of
		// both topics, so one process owns a key's notifications and its
		// parked deliveries, and can keep them in order.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.DisableAutoCommit(),
		// A partition paused at MaxPending is resumed while a fetch may be
		// waiting on the broker for the others (the retry partitions are
		// usually empty); a short wait bounds how long the resumed ones
		// stay idle.
		kgo.FetchMaxWait(100 * time.Millisecond),
		// Nothing waits on this client's writes to deliver: attempts,
		// hand-offs to the retry topic and dead letters only hold back
		// the commit. Letting them gather for a few milliseconds sends
		// fewer, larger batches, which leaves the broker more of the
		// processor (about 7% more deliveries a second in
		// webhook-bench on one machine with the broker).
		kgo.ProducerLinger(5 * time.Millisecond),
		// Dispatching a poll is quick (deliveries run on their own);
		// blocking rebalances meanwhile keeps a stale poll from being
		// dispatched into a partition that was revoked and assigned again.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.lost),
	}
	if o.Group.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(o.Group.InstanceID))
	}
	cl, err := e.newClient(opts...)
	if err != nil {
		return nil, err
	}
	e.cl = cl
	return e, nil
}

// newClient returns a client on the engine's Kafka options and extra.
func (e *Engine) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(e.kafka, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// Ready reports whether the engine is doing its work: the broker reachable,
// and no record waiting out a failure that should pass. Serve it in
// /readyz.
func (e *Engine) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return e.held.Check()
}

// Close releases the client. Call it after Run returned.
func (e *Engine) Close() {
	e.cancelAttempt()
	e.cl.Close()
}

// Run delivers until ctx ends, then finishes the attempts under way,
// commits what is finished and leaves the group.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.checkPartitions(ctx); err != nil {
		return err
	}
	committer := make(chan struct{})
	go func() {
		defer close(committer)
		t := time.NewTicker(e.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				e.commitAll(ctx)
			}
		}
	}()
	for {
		fetches := e.cl.PollRecords(ctx, 1000)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			e.cl.AllowRebalance()
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			e.log.Warn("fetch", "topic", t, "partition", p, "err", err)
		})
		e.lag.Fetched(fetches)
		fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
			e.dispatch(ftp.Topic, ftp.Partition, ftp.Records)
		})
		e.cl.AllowRebalance()
	}
	<-committer
	e.mu.Lock()
	all := map[string][]int32{}
	for tp := range e.parts {
		all[tp.topic] = append(all[tp.topic], tp.id)
	}
	e.mu.Unlock()
	e.stop(all, true)
	return nil
}

// checkPartitions refuses to run when the retry topic is not partitioned
// like the notifications topic: a key would not meet its parked
// deliveries.
func (e *Engine) checkPartitions(ctx context.Context) error {
	// A topic just created may take a moment to show in every broker's
	// metadata: missing topics are looked for again for a while.
	wait := 100 * time.Millisecond
	for deadline := time.Now().Add(30 * time.Second); ; {
		td, err := kadm.NewClient(e.cl).ListTopics(ctx, e.topics.Notifications, e.topics.Retry)
		if err != nil {
			return fmt.Errorf("describe topics: %w", err)
		}
		n, r := len(td[e.topics.Notifications].Partitions), len(td[e.topics.Retry].Partitions)
		switch {
		case n != 0 && r != 0 && n != r:
			return fmt.Errorf("%s has %d partitions and %s %d: they must be equal", e.topics.Notifications, n, e.topics.Retry, r)
		case n != 0 && r != 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("topics %s and %s must exist", e.topics.Notifications, e.topics.Retry)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// dispatch hands a partition's polled records to its worker.
func (e *Engine) dispatch(topic string, id int32, recs []*kgo.Record) {
	e.mu.Lock()
	p := e.parts[topicPartition{topic, id}]
	e.mu.Unlock()
	if p == nil || len(recs) == 0 {
		return
	}
	if p.enqueue(recs) {
		e.cl.PauseFetchPartitions(map[string][]int32{topic: {id}})
	}
}

// assigned starts a worker per assigned partition. Before the
// notifications of a partition are read, its retry partition is scanned
// from the committed offset to its end, so that every key with parked
// deliveries is known and new notifications of that key queue behind them.
// Partition p of both topics shares one table of parked lanes, built when
// the first of the two is assigned: the group's protocol may hand them
// over in separate callbacks.
func (e *Engine) assigned(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	var scan []int32
	e.mu.Lock()
	for _, ids := range m {
		for _, id := range ids {
			if _, ok := e.parks[id]; !ok && !slices.Contains(scan, id) {
				scan = append(scan, id)
			}
		}
	}
	e.mu.Unlock()
	tables, err := e.scanParked(ctx, cl, scan)
	if err != nil {
		// Without the scan order cannot be kept: leave so the group
		// reassigns, and let the service fail.
		e.log.Error("scan parked deliveries", "err", err)
		go cl.LeaveGroup()
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, t := range tables {
		if _, ok := e.parks[id]; !ok {
			e.parks[id] = t
		}
	}
	for topic, ids := range m {
		for _, id := range ids {
			h, retry := e.handler, false
			if topic == e.topics.Retry {
				h, retry = e.retryH, true
			}
			p := newPartition(e, topic, id, retry, h, e.parks[id])
			e.parts[topicPartition{topic, id}] = p
			p.start()
		}
	}
	e.log.Info("partitions assigned", "partitions", fmt.Sprint(m))
}

func (e *Engine) revoked(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	e.stop(m, true)
}

func (e *Engine) lost(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
	e.stop(m, false)
}

// stop stops the workers of m's partitions: waits stop at once, attempts
// under way finish, hand-offs are flushed, and, when commit is set, the
// finished offsets are committed.
func (e *Engine) stop(m map[string][]int32, commit bool) {
	e.lag.Forget(m)
	var parts []*partition
	e.mu.Lock()
	for topic, ids := range m {
		for _, id := range ids {
			tp := topicPartition{topic, id}
			if p := e.parts[tp]; p != nil {
				parts = append(parts, p)
				delete(e.parts, tp)
			}
		}
	}
	// A table of parked lanes goes with the last of its two partitions.
	for id := range e.parks {
		_, notes := e.parts[topicPartition{e.topics.Notifications, id}]
		_, retries := e.parts[topicPartition{e.topics.Retry, id}]
		if !notes && !retries {
			delete(e.parks, id)
		}
	}
	e.mu.Unlock()
	for _, p := range parts {
		p.cancel()
	}
	for _, p := range parts {
		p.wg.Wait()
	}
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.cl.Flush(fctx); err != nil {
		e.log.Warn("flush on revoke", "err", err)
	}
	if commit && len(parts) > 0 {
		e.commitParts(fctx, parts)
	}
}

func (e *Engine) commitAll(ctx context.Context) {
	e.mu.Lock()
	parts := make([]*partition, 0, len(e.parts))
	for _, p := range e.parts {
		parts = append(parts, p)
	}
	e.mu.Unlock()
	e.commitParts(ctx, parts)
}

// commitParts commits, for each partition, the offset up to which every
// record is finished or handed off.
func (e *Engine) commitParts(ctx context.Context, parts []*partition) {
	e.commit.Lock()
	defer e.commit.Unlock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	var done []func()
	for _, p := range parts {
		eo, ok := p.track.committable()
		if !ok {
			continue
		}
		if offsets[p.topic] == nil {
			offsets[p.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.topic][p.id] = eo
		done = append(done, func() { p.track.committed(eo.Offset) })
	}
	if len(offsets) == 0 {
		return
	}
	var cerr error
	e.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 && cerr == nil {
					cerr = fmt.Errorf("commit %s/%d: error code %d", t.Topic, p.Partition, p.ErrorCode)
				}
			}
		}
	})
	if cerr != nil {
		if ctx.Err() == nil {
			e.log.Warn("commit", "err", cerr)
		}
		return
	}
	for _, f := range done {
		f()
	}
}

// produce writes r and calls then with the result, on the client's
// callback goroutine.
func (e *Engine) produce(r *kgo.Record, then func(error)) {
	e.cl.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
		if err != nil {
			e.log.Error("produce", "topic", r.Topic, "err", err)
		}
		if then != nil {
			then(err)
		}
	})
}

// deadLetterRecord copies a record no handler can read to the dead-letter
// topic, with the reason.
func (e *Engine) deadLetterRecord(ctx context.Context, r *kgo.Record, err error) error {
	e.log.Error("record dead-lettered: unreadable", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
	e.countUnreadable(ctx)
	origin := Origin{r.Topic, r.Partition, r.Offset}
	if en, perr := ParseEntry(r); perr == nil {
		origin = en.Origin
	}
	hdr := append(append([]kgo.RecordHeader(nil), r.Headers...),
		kgo.RecordHeader{Key: HeaderErrorClass, Value: []byte("unreadable")},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(err.Error())},
	)
	if _, perr := ParseEntry(r); perr != nil {
		hdr = append(hdr, kgo.RecordHeader{Key: HeaderOrigin, Value: []byte(origin.String())})
	}
	x := trackedFrom(ctx)
	x.hold()
	e.produce(&kgo.Record{Topic: e.topics.DLQ, Key: r.Key, Value: r.Value, Headers: hdr}, func(err error) {
		if err == nil {
			e.metrics.deadLettered("unreadable")
			x.release()
		}
	})
	return nil
}

// decode reads a notification record's value.
func (e *Engine) decode(ctx context.Context, value []byte) (*notification.Notification, error) {
	n := notification.DecodeTarget()
	if _, err := e.reg.Decode(ctx, value, n); err != nil {
		return nil, err
	}
	return n, nil
}
