package main

import (
	"encoding/json"
	"os"
	"path/filepath"
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

// TestWithoutHTTPMeasuresTheEngineAndTheLoop runs -no-http on an embedded
// broker: both the Kafka loop and the engine deliver and commit every
// notification, and the figures say that nothing was posted.
func TestWithoutHTTPMeasuresTheEngineAndTheLoop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "figures.json")
	o := options{n: 3000, keys: 50, conns: 8, rounds: 1, noHTTP: true, jsonOut: out}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var f figures
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if !f.NoHTTP || f.Sender <= 0 || f.KafkaLoop <= 0 || f.SenderCPU <= 0 || f.BareClient != 0 || f.Wrk != 0 {
		t.Fatalf("figures %+v: want the engine's and the loop's, and no bare loop or wrk", f)
	}
}
