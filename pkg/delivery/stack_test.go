package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/envconfig"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

const (
	tenant  = "t1"
	channel = "scripted"
	group   = "senders"
)

// stack is what an engine test runs against: a kfake cluster and an
// srfake registry of the test's own, with Herald's topics and schemas,
// the scripted channel's retry and dead-letter topics, the followed
// configuration view, a fake clock and the scripted channel.
type stack struct {
	t      *testing.T
	seeds  []string
	opts   delivery.Options
	store  *configstore.Store
	clock  *delivery.FakeClock
	ch     *scripted
	cl     *kgo.Client
	adm    *kadm.Client
	topics delivery.Topics
}

func newStack(t *testing.T, partitions int32) *stack {
	t.Helper()
	ctx := t.Context()
	cfg := servicetest.Fakes(t, partitions)
	base, err := service.Start(ctx, "delivery-test", cfg)
	if err != nil {
		t.Fatal(err)
	}
	follow, stop := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); _ = base.FollowConfig(follow) }()
	t.Cleanup(func() { stop(); <-followed; base.Close() })
	if err := base.Config.WaitCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, seeds: cfg.Kafka.Brokers, opts: base.DeliveryOptions(channel), store: base.Config, clock: delivery.NewFakeClock()}
	s.topics = s.opts.Topics
	s.ch = newScripted(s.clock)
	if s.cl, err = base.NewClient(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	s.adm = kadm.NewClient(s.cl)
	created, err := s.adm.CreateTopics(ctx, partitions, -1, nil, s.topics.Retry, s.topics.DLQ)
	if err == nil {
		err = created.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// config is the engine configuration the tests start from: the defaults,
// with commits frequent enough to watch.
func (s *stack) config(schedule string) delivery.Config {
	s.t.Helper()
	var c delivery.Config
	if err := envconfig.Defaults(&c); err != nil {
		s.t.Fatal(err)
	}
	c.RetrySchedule = schedule
	c.CommitInterval = 20 * time.Millisecond
	return c
}

// destination stores a destination of the scripted channel.
func (s *stack) destination(id string, edit func(*configstore.Destination)) {
	s.t.Helper()
	d := configstore.Destination{Type: channel, Name: id}
	if edit != nil {
		edit(&d)
	}
	servicetest.Put(s.t, s.store, tenant, configstore.KindDestination, id, d)
}

// note is a notification a test writes: its ordering key, its place in
// the key, whether its destinations are keyed, and the destinations.
type note struct {
	key     string
	seq     int
	ordered bool
	dests   []string
}

// keyed returns the notes key#from … key#to-1, keyed, to dests.
func keyed(key string, from, to int, dests ...string) []note {
	var out []note
	for seq := from; seq < to; seq++ {
		out = append(out, note{key: key, seq: seq, ordered: true, dests: dests})
	}
	return out
}

// unordered returns the notes key#from … key#to-1, unordered, to dests.
func unordered(key string, from, to int, dests ...string) []note {
	out := keyed(key, from, to, dests...)
	for i := range out {
		out[i].ordered = false
	}
	return out
}

// produce writes notes to the notifications topic in order and returns
// their records, partition and offset set.
func (s *stack) produce(notes ...note) []*kgo.Record {
	s.t.Helper()
	schema, err := s.opts.Registry.Latest(s.t.Context(), s.opts.Subjects.Notification)
	if err != nil {
		s.t.Fatal(err)
	}
	recs := make([]*kgo.Record, 0, len(notes))
	for _, nt := range notes {
		at := time.UnixMilli(1700000000000).UTC()
		event := fmt.Sprintf("%s#%d", nt.key, nt.seq)
		n := notification.Notification{
			ID: notification.ID(tenant, event, "rule"), TenantID: tenant, RuleID: "rule", Name: "UnitAllowanceThreshold", State: "low",
			OrderingKey: nt.key, Ordered: nt.ordered, Destinations: nt.dests, CreatedAt: at,
			Event:  notification.EventRef{ID: event, EntityType: "Balance", EntityID: "b", Operation: "UPDATE", OccurredAt: at},
			Fields: map[string]string{"seq": strconv.Itoa(nt.seq)},
		}
		v, err := schema.Encode(&n)
		if err != nil {
			s.t.Fatal(err)
		}
		recs = append(recs, s.record(nt.key, v))
	}
	if err := s.cl.ProduceSync(s.t.Context(), recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	return recs
}

// record is a record of the notifications topic with the key of a
// notification of ordering key key.
func (s *stack) record(key string, value []byte) *kgo.Record {
	return &kgo.Record{Topic: s.topics.Notifications, Key: event.RecordKey(tenant, key), Value: value}
}

// read returns the records of topic, from its start, once there are at
// least n.
func (s *stack) read(topic string, n int) []*kgo.Record {
	s.t.Helper()
	out := servicetest.Read(s.t, []kgo.Opt{kgo.SeedBrokers(s.seeds...)}, topic, n, waitLimit)
	if len(out) < n {
		s.t.Fatalf("%d records in %s, want %d", len(out), topic, n)
	}
	return out
}

// count is the number of records in topic.
func (s *stack) count(topic string) int64 {
	s.t.Helper()
	ends, err := s.adm.ListEndOffsets(s.t.Context(), topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// attempts returns the attempts recorded in the deliveries topic once
// there are at least n.
func (s *stack) attempts(n int) []delivery.Attempt {
	s.t.Helper()
	var out []delivery.Attempt
	for _, r := range s.read(s.topics.Deliveries, n) {
		var a delivery.Attempt
		if _, err := s.opts.Registry.Decode(s.t.Context(), r.Value, &a); err != nil {
			s.t.Fatalf("attempt does not decode: %v", err)
		}
		out = append(out, a)
	}
	return out
}

// committed returns the group's committed offset of a partition, or -1.
func (s *stack) committed(topic string, partition int32) int64 {
	s.t.Helper()
	offsets, err := s.adm.FetchOffsets(s.t.Context(), group)
	if err != nil {
		s.t.Fatal(err)
	}
	if o, ok := offsets.Lookup(topic, partition); ok && o.Err == nil {
		return o.At
	}
	return -1
}

// advanceUntil moves the clock by step until cond holds.
func (s *stack) advanceUntil(what string, step time.Duration, cond func() bool) {
	s.t.Helper()
	eventually(s.t, what, func() bool {
		if cond() {
			return true
		}
		s.clock.Advance(step)
		return false
	})
}

// waitingUntil reports whether the clock has a wait pending that ends at
// t: an engine waiting for exactly that time.
func (s *stack) waitingUntil(t time.Time) bool {
	return slices.ContainsFunc(s.clock.Waits(), t.Equal)
}

// disabled returns the destination's disabled state in the configuration
// view.
func (s *stack) disabled(id string) *configstore.DisabledState {
	d, _, ok := s.store.Destination(tenant, id)
	if !ok {
		s.t.Fatalf("destination %s gone from the configuration", id)
	}
	return d.Disabled
}

// produceOnePerKey writes notification seq of each key, keyed to d.
func (s *stack) produceOnePerKey(keys []string, seq int) []*kgo.Record {
	var notes []note
	for _, k := range keys {
		notes = append(notes, keyed(k, seq, seq+1, "d")...)
	}
	return s.produce(notes...)
}

// produceTo writes notes whose key is in partition p, failing the test if
// it is not.
func (s *stack) produceTo(p int32, key string, notes []note) []*kgo.Record {
	s.t.Helper()
	recs := s.produce(notes...)
	for _, r := range recs {
		if r.Partition != p {
			s.t.Fatalf("key %s is in partition %d, the test wants it in %d", key, r.Partition, p)
		}
	}
	return recs
}

// decode reads a notification record's value.
func (s *stack) decode(v []byte) *notification.Notification {
	s.t.Helper()
	var n notification.Notification
	if _, err := s.opts.Registry.Decode(s.t.Context(), v, &n); err != nil {
		s.t.Fatal(err)
	}
	return &n
}

// keyOf is the ordering key of a notification record.
func (s *stack) keyOf(r *kgo.Record) string { return s.decode(r.Value).OrderingKey }

// seqOf is a notification's place in its key.
func seqOf(n *notification.Notification) int {
	i, _ := strconv.Atoi(n.Fields["seq"])
	return i
}

// noteID is the id of notification key#seq.
func noteID(key string, seq int) string {
	return notification.ID(tenant, fmt.Sprintf("%s#%d", key, seq), "rule")
}

// headers returns a record's headers by key.
func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// engine is one engine of the stack, running.
type engine struct {
	t      *testing.T
	name   string
	e      *delivery.Engine
	cable  *cable
	cancel context.CancelFunc
	done   chan error
	ended  bool
}

// start runs an engine named name in the group, a static member with the
// given instance id when it is set, until the test ends.
func (s *stack) start(name, instance string, c delivery.Config) *engine {
	s.t.Helper()
	o := s.opts
	en := &engine{t: s.t, name: name, cable: newCable(), done: make(chan error, 1)}
	o.Config, o.Clock = c, s.clock
	o.Group = delivery.Group{ID: group, InstanceID: instance}
	o.Kafka = append(slices.Clip(o.Kafka), kgo.Dialer(en.cable.dial))
	o.Deliver = endpoint{s: s.ch, engine: name, cable: en.cable}
	var err error
	if en.e, err = delivery.New(o); err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	en.cancel = cancel
	go func() { en.done <- en.e.Run(ctx) }()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			// Whatever it waits for may never come.
			en.kill()
			return
		}
		en.stop()
	})
	return en
}

// stop shuts the engine down as a service does: Run drains and commits,
// then the client closes.
func (en *engine) stop() {
	en.t.Helper()
	if en.ended {
		return
	}
	en.ended = true
	en.cancel()
	select {
	case err := <-en.done:
		if err != nil {
			en.t.Errorf("engine %s: Run: %v", en.name, err)
		}
	case <-time.After(waitLimit):
		en.t.Errorf("engine %s did not stop within %s", en.name, waitLimit)
	}
	en.e.Close()
}

// kill ends the engine as SIGKILL ends a process: its connections drop
// at once, nothing it does afterwards reaches the broker or the channel,
// and it says goodbye to no one.
func (en *engine) kill() {
	en.t.Helper()
	if en.ended {
		return
	}
	en.ended = true
	en.cable.cutAll()
	en.cancel()
	en.e.Close()
	select {
	case <-en.done:
	case <-time.After(waitLimit):
		en.t.Errorf("engine %s did not end within %s of its kill", en.name, waitLimit)
	}
}

// cable is the network between one engine and the broker. Cut, it drops
// every connection at once and refuses new ones, as a killed process's
// connections end.
type cable struct {
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
	dead  chan struct{}
}

func newCable() *cable { return &cable{dead: make(chan struct{})} }

func (c *cable) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return nil, errors.New("cable cut")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

func (c *cable) isCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut
}

func (c *cable) cutAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		return
	}
	c.cut = true
	close(c.dead)
	for _, conn := range c.conns {
		conn.Close()
	}
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", waitLimit, what)
		}
		<-tick.C
	}
}

// waitLimit bounds every wait of these tests; the race detector on a
// small shared machine is slow, a stuck engine is slower.
const waitLimit = 20 * time.Second
