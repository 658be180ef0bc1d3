package ruleevaluator

import (
	"container/heap"
	"hash/maphash"
)

// The pending timers of one events partition, in memory: for each timer,
// when it is due and where its state record is in the timers partition,
// and nothing else. The state (the entity's latest event) stays in Kafka
// and is read back when the timer comes due, so that a replica holds
// millions of timers in little memory.

// timerID names a timer in memory: a 128-bit hash of its tenant, rule,
// entity type and entity id. The timers topic keys records by the names
// themselves; the hash only indexes them.
type timerID [2]uint64

// Two seeds, one per half of the hash.
var timerSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

func newTimerID(name string) timerID {
	return timerID{maphash.String(timerSeeds[0], name), maphash.String(timerSeeds[1], name)}
}

// timerSlot is one pending timer.
type timerSlot struct {
	due   int64 // Unix milliseconds
	state int64 // offset of its state record in the timers partition
	id    timerID
	// at is the slot's position in the heap; -1 when free.
	at int32
}

// timerTable holds one partition's pending timers by id and by due time.
type timerTable struct {
	index map[timerID]int32
	slots []timerSlot
	free  []int32
	// heap orders the slots in use by due time.
	heap slotHeap
}

func newTimerTable() *timerTable {
	t := &timerTable{index: map[timerID]int32{}}
	t.heap.t = t
	return t
}

// Len returns the number of pending timers.
func (t *timerTable) Len() int { return len(t.index) }

// has reports whether the timer is pending.
func (t *timerTable) has(id timerID) bool {
	_, ok := t.index[id]
	return ok
}

// set makes the timer due at due, with its state at offset state.
func (t *timerTable) set(id timerID, due, state int64) {
	if i, ok := t.index[id]; ok {
		s := &t.slots[i]
		s.due, s.state = due, state
		heap.Fix(&t.heap, int(s.at))
		return
	}
	var i int32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		i = int32(len(t.slots))
		t.slots = append(t.slots, timerSlot{})
	}
	t.slots[i] = timerSlot{due: due, state: state, id: id}
	t.index[id] = i
	heap.Push(&t.heap, i)
}

// move makes a pending timer due at due, keeping its state; it reports
// whether the timer was pending.
func (t *timerTable) move(id timerID, due int64) bool {
	i, ok := t.index[id]
	if !ok {
		return false
	}
	t.slots[i].due = due
	heap.Fix(&t.heap, int(t.slots[i].at))
	return true
}

// cancel drops the timer, if pending.
func (t *timerTable) cancel(id timerID) {
	i, ok := t.index[id]
	if !ok {
		return
	}
	heap.Remove(&t.heap, int(t.slots[i].at))
	delete(t.index, id)
	t.slots[i] = timerSlot{at: -1}
	t.free = append(t.free, i)
}

// dueTimer is a pending timer that has come due.
type dueTimer struct {
	id    timerID
	due   int64
	state int64
}

// due returns up to limit timers due at or before now, earliest first,
// leaving them pending.
func (t *timerTable) due(now int64, limit int) []dueTimer {
	var out []dueTimer
	// Walk the heap's top without popping: a child is never due before
	// its parent, so the due timers form a subtree at the root.
	stack := []int{0}
	for len(stack) > 0 && len(out) < limit {
		k := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if k >= len(t.heap.s) {
			continue
		}
		s := &t.slots[t.heap.s[k]]
		if s.due > now {
			continue
		}
		out = append(out, dueTimer{id: s.id, due: s.due, state: s.state})
		stack = append(stack, 2*k+1, 2*k+2)
	}
	return out
}

// next returns the earliest due time, and false when nothing is pending.
func (t *timerTable) next() (int64, bool) {
	if len(t.heap.s) == 0 {
		return 0, false
	}
	return t.slots[t.heap.s[0]].due, true
}

// slotHeap is a min-heap of slot indices by due time.
type slotHeap struct {
	t *timerTable
	s []int32
}

func (h *slotHeap) Len() int { return len(h.s) }
func (h *slotHeap) Less(a, b int) bool {
	return h.t.slots[h.s[a]].due < h.t.slots[h.s[b]].due
}
func (h *slotHeap) Swap(a, b int) {
	h.s[a], h.s[b] = h.s[b], h.s[a]
	h.t.slots[h.s[a]].at = int32(a)
	h.t.slots[h.s[b]].at = int32(b)
}
func (h *slotHeap) Push(x any) {
	i := x.(int32)
	h.t.slots[i].at = int32(len(h.s))
	h.s = append(h.s, i)
}
func (h *slotHeap) Pop() any {
	n := len(h.s) - 1
	i := h.s[n]
	h.s = h.s[:n]
	return i
}
