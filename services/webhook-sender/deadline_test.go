package webhooksender

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAttemptsFromOneParentShareADeadlineWithinAGrain pins what makes the
// shared deadline safe: every attempt's context ends no sooner than the
// timeout after the attempt began and no later than a grain after that,
// and one context serves only the attempts of its grain and its parent.
func TestAttemptsFromOneParentShareADeadlineWithinAGrain(t *testing.T) {
	d := &deadlines{timeout: time.Second}
	parent, stop := context.WithCancel(t.Context())
	defer stop()
	t0 := time.Now()
	check := func(name string, ctx context.Context, now time.Time) {
		t.Helper()
		end, ok := ctx.Deadline()
		if !ok {
			t.Fatalf("%s: no deadline", name)
		}
		if end.Before(now.Add(d.timeout)) || end.After(now.Add(d.timeout+deadlineGrain)) {
			t.Errorf("%s: deadline %s after the attempt began, want between %s and %s",
				name, end.Sub(now), d.timeout, d.timeout+deadlineGrain)
		}
	}
	first, release := d.bound(parent, t0)
	check("first", first, t0)
	release()
	if first.Err() == nil {
		t.Error("the first attempt from a parent has a context of its own, which its release must end")
	}

	second, _ := d.bound(parent, t0.Add(time.Millisecond))
	check("second", second, t0.Add(time.Millisecond))
	later := t0.Add(time.Millisecond + deadlineGrain)
	third, release := d.bound(parent, later)
	check("third, a grain after the second", third, later)
	release()
	if second.Err() != nil {
		t.Error("releasing an attempt ended the context other attempts share")
	}
	within, _ := d.bound(parent, later.Add(deadlineGrain/2))
	if within != third {
		t.Error("an attempt within the grain of the one before did not share its context")
	}
	if second == third {
		t.Error("an attempt a grain later shared the context of the grain before")
	}

	// Each attempt traced has a parent of its own: nothing is shared.
	other := context.WithValue(parent, struct{}{}, 1)
	own, release := d.bound(other, later.Add(deadlineGrain/2))
	if own == third {
		t.Error("an attempt from another parent shared a context")
	}
	release()
	if !errors.Is(own.Err(), context.Canceled) {
		t.Errorf("a context of an attempt's own after its release: %v, want canceled", own.Err())
	}

	stop()
	if third.Err() == nil {
		t.Error("the shared context outlived its parent")
	}
}

// uncomparable is a context whose type cannot be compared.
type uncomparable struct {
	context.Context
	_ []int
}

func TestAnUncomparableParentIsNeverShared(t *testing.T) {
	d := &deadlines{timeout: time.Second}
	parent := uncomparable{Context: t.Context()}
	a, release := d.bound(parent, time.Now())
	release()
	b, release := d.bound(parent, time.Now())
	defer release()
	if a == b || a.Err() == nil {
		t.Error("contexts of an uncomparable parent were shared")
	}
}
