package delivery

import (
	"context"
	"sync"

	"golang.org/x/time/rate"

	"github.com/heraldhq/herald/pkg/configstore"
)

// limits holds each destination's bound on attempts in flight and its
// rate, so that one slow or rate-limited tenant cannot take every slot.
type limits struct {
	def int
	mu  sync.Mutex
	m   map[destKey]*limit
}

type limit struct {
	version int64
	sem     chan struct{}
	rate    *rate.Limiter
}

func newLimits(def int) *limits { return &limits{def: def, m: map[destKey]*limit{}} }

// get returns the destination's limit, rebuilt when its configuration
// changed.
func (l *limits) get(tenant, dest string, version int64, d configstore.Destination) *limit {
	key := destKey{tenant, dest}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.m[key]; ok && lim.version == version {
		return lim
	}
	n := d.Concurrency
	if n <= 0 {
		n = l.def
	}
	lim := &limit{version: version, sem: make(chan struct{}, n)}
	if d.RatePerSecond > 0 {
		lim.rate = rate.NewLimiter(rate.Limit(d.RatePerSecond), max(1, int(d.RatePerSecond)))
	}
	l.m[key] = lim
	return lim
}

// acquire waits for a slot and the rate, and reports false when ctx ended
// first.
func (l *limit) acquire(ctx context.Context) bool {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	if l.rate != nil {
		if err := l.rate.Wait(ctx); err != nil {
			<-l.sem
			return false
		}
	}
	return true
}

func (l *limit) release() { <-l.sem }
