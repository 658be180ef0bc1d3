package ruleevaluator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/judge"
)

// timers are the pending timers of the events partitions this replica
// owns. The group callbacks say which partitions are owned; the consume
// loop loads a partition's timers before it judges the partition's
// events, fires what is due, and applies what it wrote once committed.
type timers struct {
	log   *timerLog
	topic string

	mu sync.Mutex
	// tables holds the timers of each loaded partition.
	tables map[int32]*timerTable
	// unloaded are partitions assigned but not loaded yet.
	unloaded map[int32]bool
}

func newTimers(l *timerLog) *timers {
	return &timers{log: l, topic: l.topic, tables: map[int32]*timerTable{}, unloaded: map[int32]bool{}}
}

// assigned and revoked follow the group's assignment of events partitions.
func (t *timers) assigned(ps []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range ps {
		if _, ok := t.tables[p]; !ok {
			t.unloaded[p] = true
		}
	}
}

func (t *timers) revoked(ps []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range ps {
		delete(t.tables, p)
		delete(t.unloaded, p)
	}
}

// reset forgets every partition: a new session is assigned them afresh.
func (t *timers) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.tables)
	clear(t.unloaded)
}

// loadAssigned loads the timers of the partitions assigned since the last
// call. An error is the world's: the caller retries.
func (t *timers) loadAssigned(ctx context.Context) error {
	t.mu.Lock()
	ps := make([]int32, 0, len(t.unloaded))
	for p := range t.unloaded {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	if len(ps) == 0 {
		return nil
	}
	tables, err := t.log.load(ctx, ps)
	if err != nil {
		return fmt.Errorf("load timers: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, table := range tables {
		// Revoked while loading: no longer this replica's.
		if t.unloaded[p] {
			t.tables[p] = table
			delete(t.unloaded, p)
		}
	}
	return nil
}

// pending returns the number of pending timers.
func (t *timers) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, table := range t.tables {
		n += table.Len()
	}
	return n
}

// next returns the earliest due time of every pending timer, and false
// when none is pending.
func (t *timers) next() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first int64
	found := false
	for _, table := range t.tables {
		if n, ok := table.next(); ok && (!found || n < first) {
			first, found = n, true
		}
	}
	return first, found
}

// partitionDue is what is due in one partition.
type partitionDue struct {
	partition int32
	timers    []dueTimer
}

// due returns the timers due at now, at most limit in all, earliest first
// in each partition.
func (t *timers) due(now time.Time, limit int) []partitionDue {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []partitionDue
	ms := now.UnixMilli()
	for p, table := range t.tables {
		if limit <= 0 {
			break
		}
		if d := table.due(ms, limit); len(d) > 0 {
			slices.SortFunc(d, func(a, b dueTimer) int { return int(a.due - b.due) })
			out = append(out, partitionDue{p, d})
			limit -= len(d)
		}
	}
	return out
}

// has reports whether a timer is pending in a loaded partition.
func (t *timers) has(p int32, id timerID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	table, ok := t.tables[p]
	return ok && table.has(id)
}

// timerWrite is a record a transaction writes to the timers topic, with
// what it does to the partition's table once committed.
type timerWrite struct {
	// rec is nil for a timer dropped from memory alone.
	rec       *kgo.Record
	partition int32
	id        timerID
	due       int64 // 0 cancels
	move      bool
	state     bool // rec is the state record: its offset is the timer's state
}

// apply applies committed writes to the tables, in the order written.
func (t *timers) apply(writes []timerWrite) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range writes {
		table, ok := t.tables[w.partition]
		if !ok {
			continue // revoked meanwhile; a new owner loads what was written
		}
		switch {
		case w.due == 0:
			table.cancel(w.id)
		case w.move:
			table.move(w.id, w.due)
		case w.state:
			table.set(w.id, w.due, w.rec.Offset)
		}
	}
}

// timerChanges turns what one partition's events do to timers into the
// records that say it. fired are the timers this transaction fires (and
// cancels) in the partition: a move cannot revive one.
func (s *session) timerChanges(partition int32, changes []eventTimers, fired map[timerID]bool) []timerWrite {
	tm := s.timers
	var out []timerWrite
	// Timers set by an earlier event of the same poll, or cancelled.
	set := map[timerID]bool{}
	for _, c := range changes {
		for _, op := range c.ops {
			name := timerName(c.tenant, op.RuleID, op.EntityType, op.EntityID)
			id := newTimerID(name)
			switch {
			case op.Move:
				exists, known := set[id]
				if !known {
					exists = !fired[id] && tm.has(partition, id)
				}
				if !exists {
					continue
				}
				out = append(out, timerWrite{partition: partition, id: id, due: op.Due.UnixMilli(), move: true,
					rec: &kgo.Record{Topic: tm.topic, Partition: partition, Key: []byte(moveKeyPrefix + name), Value: moveValue(op.Due)}})
			case op.Due.IsZero():
				exists, known := set[id]
				if !known {
					exists = !fired[id] && tm.has(partition, id)
				}
				set[id] = false
				if !exists {
					continue
				}
				out = append(out, tombstones(tm.topic, partition, name, id)...)
			default:
				set[id] = true
				out = append(out, timerWrite{partition: partition, id: id, due: op.Due.UnixMilli(), state: true,
					rec: &kgo.Record{Topic: tm.topic, Partition: partition, Key: []byte(stateKeyPrefix + name), Value: stateValue(op.Due, c.event)}})
			}
		}
	}
	return out
}

// tombstones cancels a timer: both its records go.
func tombstones(topic string, partition int32, name string, id timerID) []timerWrite {
	return []timerWrite{
		{partition: partition, id: id, rec: &kgo.Record{Topic: topic, Partition: partition, Key: []byte(stateKeyPrefix + name)}},
		{partition: partition, id: id, rec: &kgo.Record{Topic: topic, Partition: partition, Key: []byte(moveKeyPrefix + name)}},
	}
}

// eventTimers is what one event does to timers.
type eventTimers struct {
	tenant string
	event  []byte
	ops    []judge.TimerOp
}

// fireDue judges the timers due in one partition and returns the records
// that fire them: each timer's notification, if its rule still fires, and
// its tombstones. An error is the world's.
func (s *session) fireDue(ctx context.Context, pd partitionDue) (out []*kgo.Record, writes []timerWrite, fired map[timerID]bool, lags []time.Duration, err error) {
	e, tm := s.e, s.timers
	offsets := make([]int64, len(pd.timers))
	for i, d := range pd.timers {
		offsets[i] = d.state
	}
	states, err := tm.log.read(ctx, pd.partition, offsets)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fired = make(map[timerID]bool, len(pd.timers))
	now := time.Now()
	for _, d := range pd.timers {
		r, ok := states[d.state]
		var rec timerRecord
		var perr error
		if ok {
			rec, perr = parseTimerRecord(r)
		}
		tenant, rule, _, entity, named := parseTimerName(rec.name)
		if !ok || perr != nil || rec.move || rec.due == 0 || !named {
			// Nothing to judge, and nothing a retry mends: the timer ends
			// here, in memory; its records, if any, stay for an operator.
			e.base.Log.Error("timer state unreadable; dropped", "partition", pd.partition, "offset", d.state, "found", ok, "err", perr)
			fired[d.id] = true
			writes = append(writes, timerWrite{partition: pd.partition, id: d.id})
			continue
		}
		at := time.UnixMilli(d.due).UTC()
		v, err := e.judge.Timer(ctx, judge.Due{Tenant: tenant, RuleID: rule, EntityID: entity, At: at, State: rec.event})
		var re *judge.RecordError
		switch {
		case errors.As(err, &re):
			// The state was an event the evaluator judged once; this is
			// a rule's or a schema's doing. The timer ends; the record
			// keeps why.
			out = append(out, e.deadLetter(r, classUnreadable, re.Error()))
		case err != nil:
			return nil, nil, nil, nil, fmt.Errorf("judge timer %s: %w", rec.name, err)
		default:
			for _, n := range v.Notifications {
				out = append(out, &kgo.Record{Topic: e.base.Topics.Notifications, Key: n.Key, Value: n.Value})
			}
			if len(v.Failures) > 0 {
				out = append(out, e.deadLetter(r, classRuleFailed, e.failureReasons(ctx, v, r)))
			}
		}
		fired[d.id] = true
		writes = append(writes, tombstones(tm.topic, pd.partition, rec.name, d.id)...)
		lags = append(lags, now.Sub(at))
	}
	return out, writes, fired, lags, nil
}

// timerPartitioner sends a timer record to the partition it names and
// partitions every other record with other.
type timerPartitioner struct {
	timers string
	other  kgo.Partitioner
}

func (p timerPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.timers {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.other.ForTopic(topic)
}
