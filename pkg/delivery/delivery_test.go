package delivery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/httpapi"
)

func TestScheduleWaitsWithJitterAndEnds(t *testing.T) {
	s, err := ParseSchedule(DefaultSchedule)
	if err != nil {
		t.Fatal(err)
	}
	if s.Attempts() != 8 {
		t.Fatalf("default schedule has %d attempts, want 8", s.Attempts())
	}
	for n := 1; n < s.Attempts(); n++ {
		for range 100 {
			w, ok := s.Wait(n, 0)
			lo, hi := time.Duration(float64(s[n])*(1-Jitter)), time.Duration(float64(s[n])*(1+Jitter))
			if !ok || w < lo || w > hi {
				t.Fatalf("wait after attempt %d = %v, want within [%v, %v]", n, w, lo, hi)
			}
		}
	}
	if _, ok := s.Wait(8, 0); ok {
		t.Error("a wait after the last attempt")
	}
	if w, _ := s.Wait(1, 7*time.Second); w != 7*time.Second {
		t.Errorf("Retry-After 7s gave %v", w)
	}
	if w, _ := s.Wait(1, 100*time.Hour); w != 10*time.Hour {
		t.Errorf("Retry-After 100h gave %v, want the longest step", w)
	}
	for _, bad := range []string{"", "5s,x", "-1s"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestEntryHeadersRoundTrip(t *testing.T) {
	in := Entry{Destination: "d1", Attempts: 3, Due: time.UnixMilli(1700000000123), Ordered: true, ErrorClass: "status",
		Error: "endpoint answered 503", Origin: Origin{"p.notifications", 2, 41}}
	out, err := ParseEntry(&kgo.Record{Headers: in.Headers()})
	if err != nil || out != in {
		t.Errorf("round trip = %+v, %v; want %+v", out, err, in)
	}
	if _, err := ParseEntry(&kgo.Record{}); err == nil {
		t.Error("an entry without a destination parsed")
	}
	if o, err := ParseOrigin("a.b/c/1/7"); err != nil || o != (Origin{"a.b/c", 1, 7}) {
		t.Errorf("origin with a slash in the topic = %+v, %v", o, err)
	}
}

func TestMiddlewareSortsRecordErrors(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var dead []error
	var held httpapi.Condition
	tries, retries := 0, 0
	h := Chain(func(ctx context.Context, r *kgo.Record) error {
		tries++
		switch string(r.Value) {
		case "panic":
			panic("boom")
		case "wire":
			return &avro.WireError{Reason: "bad magic byte"}
		case "flaky":
			if tries < 3 {
				return errors.New("registry unreachable")
			}
		}
		return nil
	}, DeadLetter(func(_ context.Context, _ *kgo.Record, err error) error { dead = append(dead, err); return nil }),
		RetryTransient(log, time.Millisecond, &held, func(context.Context) {
			retries++
			if held.Check() == nil {
				t.Error("readiness passes while a record waits out a transient failure")
			}
		}), Unreadable(), Recover(log))
	for _, v := range []string{"panic", "wire", "flaky"} {
		tries = 0
		if err := h(t.Context(), &kgo.Record{Value: []byte(v)}); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	if len(dead) != 2 {
		t.Errorf("dead-lettered %d records, want the panic and the wire error", len(dead))
	}
	if tries != 3 || retries != 2 {
		t.Errorf("flaky record tried %d times with %d retries counted, want 3 and 2", tries, retries)
	}
	if err := held.Check(); err != nil {
		t.Errorf("readiness after the flaky record went through: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := h(ctx, &kgo.Record{Value: []byte("flaky")}); !errors.Is(err, context.Canceled) && err != nil {
		t.Errorf("cancelled: %v", err)
	}
}

func TestClassifyDefaultsToRetry(t *testing.T) {
	if ae := classify(errors.New("reset")); ae.Kind != Retry || ae.Class != "error" {
		t.Errorf("unclassified error: %+v", ae)
	}
	if ae := classify(GoneError("status", errors.New("410"))); ae.Kind != Gone {
		t.Errorf("gone: %+v", ae)
	}
}

func TestHealthTripsOnceAfterPeriodAndAttempts(t *testing.T) {
	clock := newFakeClock()
	h := newHealth(time.Hour, 3, clock)
	trips := 0
	for range 5 {
		if h.observe("t", "d", false) {
			trips++
		}
	}
	if trips != 0 {
		t.Errorf("tripped %d times within the hour", trips)
	}
	clock.Advance(time.Hour)
	for range 5 {
		if h.observe("t", "d", false) {
			trips++
		}
	}
	if trips != 1 {
		t.Errorf("tripped %d times, want once after an hour of failures", trips)
	}
	h.observe("t", "d", true)
	if h.observe("t", "d", false) {
		t.Error("tripped on the first failure after a success")
	}
}

// TestMiddlewareCostsNothingForARecordHandled pins that the middleware
// around every record allocates nothing when the handler succeeds, which
// is what nearly every record does.
func TestMiddlewareCostsNothingForARecordHandled(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var held httpapi.Condition
	h := Chain(func(context.Context, *kgo.Record) error { return nil },
		DeadLetter(func(context.Context, *kgo.Record, error) error { return nil }),
		RetryTransient(log, time.Millisecond, &held, func(context.Context) {}), Unreadable(), Recover(log))
	ctx, r := t.Context(), &kgo.Record{Value: []byte("ok")}
	allocs := testing.AllocsPerRun(100, func() {
		if err := h(ctx, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > raceAllocs {
		t.Errorf("the middleware allocates %.0f times for a record handled, want none", allocs)
	}
}
