package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
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

// Engine delivers the notifications of one channel.
type Engine struct {
	base     *service.Base
	log      *slog.Logger
	cfg      Config
	schedule Schedule
	channel  string
	ch       Channel
	group    Group
	cl       *kgo.Client

	notifications, retry, dlq, deliveries string

	sem     chan struct{}
	limits  *limits
	health  *health
	handler Handler // notifications
	retryH  Handler // retry entries
	// held fails /readyz while a record waits out the world's fault.
	held            httpapi.Condition
	countUnreadable func(context.Context)

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

// New returns the engine of channel (the destination type it serves, such
// as "webhook") for ch, on the service's Kafka, registry and
// configuration.
func New(base *service.Base, cfg Config, channel string, group Group, ch Channel) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	schedule, _ := ParseSchedule(cfg.RetrySchedule)
	e := &Engine{
		base: base, log: base.Log.With("channel", channel), cfg: cfg, schedule: schedule,
		channel: channel, ch: ch, group: group,
		notifications: base.Topics.Notifications, retry: base.Topics.Retry(channel),
		dlq: base.Topics.DLQ(channel), deliveries: base.Topics.Deliveries,
		sem:   make(chan struct{}, cfg.Concurrency),
		parts: map[topicPartition]*partition{}, parks: map[int32]*parkTable{},
	}
	e.limits = newLimits(cfg.DestinationConcurrency)
	e.health = newHealth(cfg.DisableAfter, cfg.DisableMinAttempts)
	e.attemptCtx, e.cancelAttempt = context.WithCancel(context.Background())
	meter := base.Metrics.Meter("herald/delivery")
	channelAttr := metric.WithAttributes(attribute.String("channel", channel))
	unreadable := telemetry.Counter(meter, "herald.delivery.unreadable", "Records no handler can read (bad bytes, a handler panic), dead-lettered: the record's fault.")
	transient := telemetry.Counter(meter, "herald.delivery.transient_retries", "Records retried in place after a failure that should pass (registry or broker out of reach): the world's fault.")
	e.countUnreadable = func(ctx context.Context) { unreadable.Add(ctx, 1, channelAttr) }
	base.Health.AddCheck("records", e.held.Check)
	mws := []Middleware{
		DeadLetter(e.deadLetterRecord),
		RetryTransient(e.log, 500*time.Millisecond, &e.held, func(ctx context.Context) { transient.Add(ctx, 1, channelAttr) }),
		Unreadable(), Recover(e.log),
	}
	e.handler = Chain(e.handleNotification, mws...)
	e.retryH = Chain(e.handleRetry, mws...)

	opts := []kgo.Opt{
		kgo.ConsumerGroup(group.ID),
		kgo.ConsumeTopics(e.notifications, e.retry),
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
		// Dispatching a poll is quick (deliveries run on their own);
		// blocking rebalances meanwhile keeps a stale poll from being
		// dispatched into a partition that was revoked and assigned again.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.lost),
	}
	if group.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(group.InstanceID))
	}
	cl, err := base.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	e.cl = cl
	base.Health.AddCheck("kafka", func() error { return cl.Ping(context.Background()) })
	return e, nil
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
	td, err := kadm.NewClient(e.cl).ListTopics(ctx, e.notifications, e.retry)
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	n, r := len(td[e.notifications].Partitions), len(td[e.retry].Partitions)
	if n == 0 || r == 0 {
		return fmt.Errorf("topics %s and %s must exist", e.notifications, e.retry)
	}
	if n != r {
		return fmt.Errorf("%s has %d partitions and %s %d: they must be equal", e.notifications, n, e.retry, r)
	}
	return nil
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
func (e *Engine) assigned(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	tables, err := e.scanParked(ctx, cl, m[e.retry])
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
		e.parks[id] = t
	}
	for topic, ids := range m {
		for _, id := range ids {
			if _, ok := e.parks[id]; !ok {
				e.parks[id] = newParkTable()
			}
			h, retry := e.handler, false
			if topic == e.retry {
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
	var parts []*partition
	e.mu.Lock()
	for topic, ids := range m {
		for _, id := range ids {
			tp := topicPartition{topic, id}
			if p := e.parts[tp]; p != nil {
				parts = append(parts, p)
				delete(e.parts, tp)
			}
			if topic == e.retry {
				delete(e.parks, id)
			}
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
	e.produce(&kgo.Record{Topic: e.dlq, Key: r.Key, Value: r.Value, Headers: hdr}, func(err error) {
		if err == nil {
			x.release()
		}
	})
	return nil
}

// decode reads a notification record's value.
func (e *Engine) decode(ctx context.Context, value []byte) (*notification.Notification, error) {
	var n notification.Notification
	if _, err := e.base.Registry.Decode(ctx, value, &n); err != nil {
		return nil, err
	}
	return &n, nil
}
