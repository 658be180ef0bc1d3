package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partition is the worker of one assigned partition: a dispatcher that
// runs the handler on each record in order, the keyed lanes the handler
// feeds, and the offsets still in progress.
type partition struct {
	e      *Engine
	topic  string
	id     int32
	retry  bool // a retry-topic partition
	h      Handler
	parks  *parkTable
	track  *tracker
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// current is the record the dispatcher's handler is on; only the
	// dispatcher's goroutine touches it.
	current *tracked

	mu     sync.Mutex
	queue  []*kgo.Record
	wake   chan struct{}
	paused bool
	lanes  map[string]*lane
}

func newPartition(e *Engine, topic string, id int32, retry bool, h Handler, parks *parkTable) *partition {
	p := &partition{
		e: e, topic: topic, id: id, retry: retry, h: h, parks: parks,
		wake: make(chan struct{}, 1), lanes: map[string]*lane{},
	}
	p.track = &tracker{p: p}
	ctx, cancel := context.WithCancel(context.Background())
	p.ctx, p.cancel = context.WithValue(ctx, partitionKey{}, p), cancel
	return p
}

func (p *partition) start() {
	p.wg.Add(1)
	go p.dispatchLoop()
}

// enqueue adds polled records and reports whether fetching should pause.
func (p *partition) enqueue(recs []*kgo.Record) bool {
	p.mu.Lock()
	p.queue = append(p.queue, recs...)
	pause := !p.paused && len(p.queue)+p.track.pending() >= p.e.cfg.MaxPending
	if pause {
		p.paused = true
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return pause
}

// maybeResume resumes fetching once the partition has drained to half its
// bound.
func (p *partition) maybeResume() {
	p.mu.Lock()
	resume := p.paused && len(p.queue)+p.track.pending() < p.e.cfg.MaxPending/2+1
	if resume {
		p.paused = false
	}
	p.mu.Unlock()
	if resume && p.ctx.Err() == nil {
		p.e.cl.ResumeFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

func (p *partition) dispatchLoop() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		var r *kgo.Record
		if len(p.queue) > 0 {
			r = p.queue[0]
			p.queue[0] = nil
			p.queue = p.queue[1:]
		}
		p.mu.Unlock()
		if r == nil {
			select {
			case <-p.ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		if p.ctx.Err() != nil {
			return
		}
		x := p.track.add(r)
		p.current = x
		if err := p.h(p.ctx, r); err != nil {
			// Only the end of the partition's context stops a handler;
			// the record stays unfinished and is read again by the next
			// owner.
			return
		}
		x.release()
	}
}

// spawn runs f on the partition's wait group.
func (p *partition) spawn(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// lane is the queue of one (key, destination): its deliveries run one at a
// time, in order.
type lane struct {
	key  string
	jobs []*job
}

// push queues j behind its lane, starting the lane if it was idle.
func (p *partition) push(j *job) {
	p.mu.Lock()
	l := p.lanes[j.lane]
	if l != nil {
		l.jobs = append(l.jobs, j)
		p.mu.Unlock()
		return
	}
	l = &lane{key: j.lane}
	p.lanes[j.lane] = l
	p.mu.Unlock()
	p.spawn(func() { p.runLane(l, j) })
}

func (p *partition) runLane(l *lane, j *job) {
	for j != nil {
		if !p.e.process(p, j, l) {
			return // stopped
		}
		p.mu.Lock()
		j = nil
		if len(l.jobs) > 0 {
			j = l.jobs[0]
			l.jobs[0] = nil
			l.jobs = l.jobs[1:]
		} else {
			delete(p.lanes, l.key)
		}
		p.mu.Unlock()
	}
}

// takeLane removes and returns the jobs queued in l, for a lane that is
// handed back to the retry topic whole.
func (p *partition) takeLane(l *lane) []*job {
	p.mu.Lock()
	defer p.mu.Unlock()
	jobs := l.jobs
	l.jobs = nil
	return jobs
}

// queued reports how many jobs wait behind l's head.
func (p *partition) queued(l *lane) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(l.jobs)
}

// tracker follows a partition's records from read to finished and tells
// the offset up to which all are finished.
type tracker struct {
	p       *partition
	mu      sync.Mutex
	entries []*tracked
	last    *kgo.Record
	done    int64 // committed offset
}

// tracked is one record in progress. It is finished when its hold count
// falls to zero: the handler holds it while it runs, and each delivery it
// started holds it until that delivery is done or handed off.
type tracked struct {
	t      *tracker
	offset int64
	epoch  int32
	holds  int
}

func (t *tracker) add(r *kgo.Record) *tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := &tracked{t: t, offset: r.Offset, epoch: r.LeaderEpoch, holds: 1}
	t.entries = append(t.entries, x)
	t.last = r
	return x
}

func (x *tracked) hold() {
	x.t.mu.Lock()
	x.holds++
	x.t.mu.Unlock()
}

func (x *tracked) release() {
	t := x.t
	t.mu.Lock()
	x.holds--
	t.mu.Unlock()
	t.p.maybeResume()
}

// pending is the number of records read and not yet finished, counting
// finished ones behind an unfinished one.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance()
	return len(t.entries)
}

func (t *tracker) advance() {
	i := 0
	for i < len(t.entries) && t.entries[i].holds <= 0 {
		i++
	}
	if i > 0 {
		clear(t.entries[:i])
		t.entries = t.entries[i:]
	}
}

// committable returns the offset to commit, and false when nothing new
// is finished.
func (t *tracker) committable() (kgo.EpochOffset, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advance()
	var eo kgo.EpochOffset
	switch {
	case len(t.entries) > 0:
		eo = kgo.EpochOffset{Epoch: t.entries[0].epoch, Offset: t.entries[0].offset}
	case t.last != nil:
		eo = kgo.EpochOffset{Epoch: t.last.LeaderEpoch, Offset: t.last.Offset + 1}
	default:
		return eo, false
	}
	return eo, eo.Offset > t.done
}

func (t *tracker) committed(o int64) {
	t.mu.Lock()
	t.done = max(t.done, o)
	t.mu.Unlock()
}

// partitionKey is the key of the partition's context value: the partition
// itself, so that a handler finds its partition and record from its
// context.
type partitionKey struct{}

// partitionFrom returns the partition whose handler was given ctx, or nil.
func partitionFrom(ctx context.Context) *partition {
	p, _ := ctx.Value(partitionKey{}).(*partition)
	return p
}

// trackedFrom returns the record in progress of the partition whose
// handler was given ctx.
func trackedFrom(ctx context.Context) *tracked {
	if p := partitionFrom(ctx); p != nil {
		return p.current
	}
	return nil
}

// parkTable counts, per (key, destination) lane, the parked deliveries of
// one partition number that are not finished: those in the retry topic
// and those being written to it. A lane with a count is parked: its new
// notifications are parked behind the others, in order.
type parkTable struct {
	mu    sync.Mutex
	count map[string]int
}

func newParkTable() *parkTable { return &parkTable{count: map[string]int{}} }

func (t *parkTable) add(lane string, n int) {
	if t.count[lane] += n; t.count[lane] == 0 {
		delete(t.count, lane)
	}
}

// parked reports the lane's count; call with mu held.
func (t *parkTable) parked(lane string) int { return t.count[lane] }

// done counts one parked delivery of lane as finished.
func (t *parkTable) done(lane string) {
	t.mu.Lock()
	t.add(lane, -1)
	t.mu.Unlock()
}

// laneKey names a (key, destination) lane.
func laneKey(key []byte, dest string) string { return string(key) + "\x00" + dest }

// scanParked reads the assigned retry partitions from the group's
// committed offsets to their ends and counts the parked deliveries of each
// lane.
func (e *Engine) scanParked(ctx context.Context, cl *kgo.Client, ids []int32) (map[int32]*parkTable, error) {
	tables := map[int32]*parkTable{}
	if len(ids) == 0 {
		return tables, nil
	}
	adm := kadm.NewClient(cl)
	committed, err := adm.FetchOffsets(ctx, e.group.ID)
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets: %w", err)
	}
	starts, err := adm.ListStartOffsets(ctx, e.topics.Retry)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, e.topics.Retry)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	from := map[int32]kgo.Offset{}
	until := map[int32]int64{}
	for _, id := range ids {
		tables[id] = newParkTable()
		start := int64(0)
		if s, ok := starts.Lookup(e.topics.Retry, id); ok {
			start = s.Offset
		}
		if c, ok := committed.Lookup(e.topics.Retry, id); ok && c.At >= 0 {
			start = max(start, c.At)
		}
		end, ok := ends.Lookup(e.topics.Retry, id)
		if !ok || end.Offset <= start {
			continue
		}
		from[id] = kgo.NewOffset().At(start)
		until[id] = end.Offset
	}
	if len(from) == 0 {
		return tables, nil
	}
	sc, err := e.newClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.topics.Retry: from}))
	if err != nil {
		return nil, err
	}
	defer sc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for len(until) > 0 {
		fs := sc.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("scan %s: %w", e.topics.Retry, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := until[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if en, err := ParseEntry(r); err == nil && en.Ordered {
				tables[r.Partition].add(laneKey(r.Key, en.Destination), 1)
			}
			if r.Offset+1 >= end {
				delete(until, r.Partition)
			}
		})
	}
	return tables, nil
}
