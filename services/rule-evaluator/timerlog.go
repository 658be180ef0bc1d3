package ruleevaluator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The timers topic is compacted and partitioned as the events topic: the
// timers an event sets live on the event's partition number, so the
// replica that owns an entity's events owns its timers, and loads only
// its partitions' timers when they are assigned to it.
//
// A timer is up to two records, keyed by its name
// ({tenant}/{rule}/{entityType}/{entityId}):
//   - "state/" + name: the due time (8 bytes, Unix milliseconds, big
//     endian) followed by the event that set it, in the wire format;
//   - "move/" + name: a due time alone, written when another entity's
//     event (a SIM's usage) moves the timer and keeps its state.
//
// The later of the two, in the partition's order, says when the timer is
// due. Tombstones of both cancel it, and are written in the transaction
// that fires it.

const (
	stateKeyPrefix = "state/"
	moveKeyPrefix  = "move/"
)

// timerName returns the name a timer is kept under.
func timerName(tenant, rule, entityType, entityID string) string {
	return tenant + "/" + rule + "/" + entityType + "/" + entityID
}

// parseTimerName splits a timer's name; the entity id may hold slashes.
func parseTimerName(name string) (tenant, rule, entityType, entityID string, ok bool) {
	parts := strings.SplitN(name, "/", 4)
	if len(parts) != 4 {
		return "", "", "", "", false
	}
	return parts[0], parts[1], parts[2], parts[3], true
}

// stateValue is a state record's value.
func stateValue(due time.Time, event []byte) []byte {
	v := make([]byte, 8, 8+len(event))
	binary.BigEndian.PutUint64(v, uint64(due.UnixMilli()))
	return append(v, event...)
}

// moveValue is a move record's value.
func moveValue(due time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(due.UnixMilli()))
}

// timerRecord is one record of the timers topic, read.
type timerRecord struct {
	name  string
	move  bool
	due   int64 // Unix milliseconds; 0 for a tombstone
	event []byte
}

func parseTimerRecord(r *kgo.Record) (timerRecord, error) {
	k := string(r.Key)
	var t timerRecord
	switch {
	case strings.HasPrefix(k, stateKeyPrefix):
		t.name = k[len(stateKeyPrefix):]
	case strings.HasPrefix(k, moveKeyPrefix):
		t.name, t.move = k[len(moveKeyPrefix):], true
	default:
		return t, fmt.Errorf("timer record key %q has neither prefix", k)
	}
	if r.Value == nil {
		return t, nil
	}
	if len(r.Value) < 8 || (t.move && len(r.Value) != 8) {
		return t, fmt.Errorf("timer record %q: value of %d bytes", k, len(r.Value))
	}
	t.due = int64(binary.BigEndian.Uint64(r.Value))
	t.event = r.Value[8:]
	return t, nil
}

// apply applies one record of the timers partition, read in order, to t.
func (t *timerTable) apply(rec timerRecord, offset int64) {
	id := newTimerID(rec.name)
	switch {
	case rec.due == 0:
		t.cancel(id)
	case rec.move:
		t.move(id, rec.due)
	default:
		t.set(id, rec.due, offset)
	}
}

// timerLog reads the timers topic: whole partitions when they are
// assigned, and single state records when their timers come due.
type timerLog struct {
	topic string
	opts  []kgo.Opt
	// admin lists the topic's end offsets.
	admin *kadm.Client
	cl    *kgo.Client
}

func newTimerLog(opts []kgo.Opt, topic string) (*timerLog, error) {
	l := &timerLog{topic: topic, opts: append(append([]kgo.Opt(nil), opts...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// A fetch with nothing new answers at once rather than waiting
		// for data, so that reading a record ends soon.
		kgo.FetchMaxWait(100*time.Millisecond),
	)}
	var err error
	if l.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("timers client: %w", err)
	}
	l.admin = kadm.NewClient(l.cl)
	return l, nil
}

func (l *timerLog) Close() { l.cl.Close() }

// loadQuiet is how long a load waits without a record before it takes a
// partition as read to its end: the records between its last and the end
// offset were removed by compaction, or are markers of transactions.
const loadQuiet = 3 * time.Second

// load reads partitions of the timers topic from their start to their
// last stable offset and returns their pending timers.
func (l *timerLog) load(ctx context.Context, partitions []int32) (map[int32]*timerTable, error) {
	ends, err := l.admin.ListCommittedOffsets(ctx, l.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", l.topic, err)
	}
	tables := make(map[int32]*timerTable, len(partitions))
	end := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	for _, p := range partitions {
		o, ok := ends.Lookup(l.topic, p)
		if !ok {
			return nil, fmt.Errorf("timers topic %s has no partition %d: it must have as many partitions as the events topic", l.topic, p)
		}
		tables[p] = newTimerTable()
		if o.Offset > 0 {
			end[p] = o.Offset
			from[p] = kgo.NewOffset().AtStart()
		}
	}
	if len(end) == 0 {
		return tables, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), l.opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.topic: from}),
		// A transaction's marker is the last offset before the end: kept,
		// it says that the partition is read to its end.
		kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("timers loader: %w", err)
	}
	defer cl.Close()
	quiet := time.Now()
	for len(end) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return nil, fmt.Errorf("read timers: %w", ferr)
		}
		if fs.NumRecords() == 0 {
			if time.Since(quiet) > loadQuiet {
				break
			}
			continue
		}
		quiet = time.Now()
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			stop, ok := end[r.Partition]
			if !ok || r.Offset >= stop {
				return
			}
			if !r.Attrs.IsControl() {
				rec, err := parseTimerRecord(r)
				if err != nil {
					perr = err
					return
				}
				tables[r.Partition].apply(rec, r.Offset)
			}
			if r.Offset+1 >= stop {
				delete(end, r.Partition)
			}
		})
		if perr != nil {
			return nil, perr
		}
	}
	return tables, nil
}

// readGap is how far past the last record read a wanted offset must be
// for a read to seek to it rather than read on.
const readGap = 500

// read returns the records at offsets of a timers partition; an offset
// with no committed record (it cannot happen to a state record a table
// points at, short of the topic being cut) is left out.
func (l *timerLog) read(ctx context.Context, partition int32, offsets []int64) (map[int64]*kgo.Record, error) {
	offsets = slices.Clone(offsets)
	slices.Sort(offsets)
	offsets = slices.Compact(offsets)
	got := make(map[int64]*kgo.Record, len(offsets))
	next := 0 // offsets[next] is the first not read yet
	deadline := time.Now().Add(30 * time.Second)
	for next < len(offsets) {
		// A client of its own for each run of nearby offsets: it starts
		// where the run starts and reads nothing left from another.
		at := offsets[next]
		cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), l.opts...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.topic: {partition: kgo.NewOffset().At(at)}}))...)
		if err != nil {
			return nil, fmt.Errorf("timers reader: %w", err)
		}
		err = func() error {
			defer cl.Close()
			for next < len(offsets) && offsets[next] <= at+readGap {
				if time.Now().After(deadline) {
					return fmt.Errorf("read %d timer states of %s/%d: timed out", len(offsets)-next, l.topic, partition)
				}
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				fs := cl.PollFetches(pctx)
				cancel()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				var ferr error
				fs.EachError(func(_ string, _ int32, err error) {
					if !errors.Is(err, context.DeadlineExceeded) && ferr == nil {
						ferr = err
					}
				})
				if ferr != nil {
					return fmt.Errorf("read timer states: %w", ferr)
				}
				fs.EachRecord(func(r *kgo.Record) {
					at = r.Offset + 1
					for next < len(offsets) && offsets[next] <= r.Offset {
						if offsets[next] == r.Offset {
							got[r.Offset] = r
						}
						next++
					}
				})
			}
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	return got, nil
}
