package main

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTheKafkaLoopCommitsOnlyWhatIsDone finishes a partition's
// notifications out of order: nothing is committable while the first is
// not done, and then the whole run of done ones at the front is.
func TestTheKafkaLoopCommitsOnlyWhatIsDone(t *testing.T) {
	q := &inOrder{}
	ps := make([]*pending, 4)
	for i := range ps {
		ps[i] = &pending{r: &kgo.Record{Offset: int64(i)}}
		q.queue = append(q.queue, ps[i])
	}
	for _, i := range []int{2, 1} {
		if r := q.finish(ps[i]); r != nil {
			t.Fatalf("finishing offset %d before offset 0 made offset %d committable", i, r.Offset)
		}
	}
	if r := q.finish(ps[0]); r == nil || r.Offset != 2 {
		t.Fatalf("finishing offset 0 after 1 and 2: committable %v, want offset 2", r)
	}
	if r := q.finish(ps[3]); r == nil || r.Offset != 3 {
		t.Fatalf("finishing offset 3 last: committable %v, want offset 3", r)
	}
}
