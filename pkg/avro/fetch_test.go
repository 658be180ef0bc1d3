package avro

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// slowRegistry is an in-memory registry behind a proxy that holds each
// lookup for a while and counts the lookups, so that callers missing the
// cache together all arrive while the first lookup is under way.
type slowRegistry struct {
	*Registry
	mu      sync.Mutex
	lookups map[string]int // by path
}

func newSlowRegistry(t *testing.T, delay time.Duration) *slowRegistry {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	target, err := url.Parse(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	r := &slowRegistry{lookups: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && (strings.HasPrefix(req.URL.Path, "/schemas/ids/") || strings.HasSuffix(req.URL.Path, "/versions/latest")) {
			r.mu.Lock()
			r.lookups[req.URL.Path]++
			r.mu.Unlock()
			time.Sleep(delay)
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	r.Registry = NewRegistry(cl, time.Hour)
	return r
}

// count returns how many times path was looked up.
func (r *slowRegistry) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[path]
}

const (
	usageSubject = "herald.events-herald.events.Usage"
	latestPath   = "/subjects/" + usageSubject + "/versions/latest"
)

// TestCallersMissingTogetherAskTheRegistryOnce pins that a cold or expired
// cache costs the registry one lookup, not one per worker: every worker of
// a service misses at once when it starts.
func TestCallersMissingTogetherAskTheRegistryOnce(t *testing.T) {
	r := newSlowRegistry(t, 100*time.Millisecond)
	register(t, r.Registry, usageSubject, usageV1)
	// Registering leaves the caches warm; a fresh view of the same
	// registry starts cold, as a service does.
	cold := NewRegistry(r.cl, time.Hour)
	r.reset()

	const callers = 32
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]int, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			<-start
			s, err := cold.Latest(t.Context(), usageSubject)
			if err == nil {
				_, err = cold.ByID(t.Context(), s.ID)
			}
			ids[i], errs[i] = s.ID, err
		})
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("caller %d: id %d, %v; caller 0 has id %d", i, ids[i], errs[i], ids[0])
		}
	}
	r.eachOnce(t)
}

// reset forgets the lookups so far.
func (r *slowRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.lookups)
}

// eachOnce checks that the latest version was looked up, and every path
// once.
func (r *slowRegistry) eachOnce(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lookups[latestPath] == 0 {
		t.Fatalf("lookups %v, none of the latest version", r.lookups)
	}
	for path, n := range r.lookups {
		if n != 1 {
			t.Errorf("%s was looked up %d times, want once (all lookups: %v)", path, n, r.lookups)
		}
	}
}

// TestACallerGivingUpFailsNoOther pins that the lookup callers share does
// not end with the caller that began it.
func TestACallerGivingUpFailsNoOther(t *testing.T) {
	r := newSlowRegistry(t, 200*time.Millisecond)
	register(t, r.Registry, usageSubject, usageV1)
	cold := NewRegistry(r.cl, time.Hour)
	r.reset()

	impatient, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := cold.Latest(impatient, usageSubject)
		first <- err
	}()
	// The impatient caller begins the lookup.
	for r.count(latestPath) == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := cold.Latest(t.Context(), usageSubject); err != nil {
		t.Errorf("a caller waiting on a lookup that another caller began and gave up on: %v", err)
	}
	if err := <-first; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the caller that gave up: %v, want its deadline", err)
	}
	// Both callers shared one lookup of each.
	r.eachOnce(t)
}

// TestAPanicInASharedLookupReachesEachCaller pins that a lookup that
// panics (a schema the parser chokes on) panics in every caller waiting
// on it, where each can recover as it could from its own lookup, and not
// in a goroutine of its own, where it would end the process.
func TestAPanicInASharedLookupReachesEachCaller(t *testing.T) {
	r := NewRegistry(nil, time.Hour)
	const callers = 8
	started := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	fetch := func(context.Context) (int, error) {
		once.Do(func() { close(started) })
		<-release
		panic("the parser choked")
	}
	recovered := make(chan any, callers)
	var wg sync.WaitGroup
	call := func() {
		defer wg.Done()
		defer func() { recovered <- recover() }()
		_, _ = fetchOnce(t.Context(), r, "id 7", fetch)
	}
	wg.Add(1)
	go call()
	<-started // the first caller's lookup is under way; the others join it
	for range callers - 1 {
		wg.Add(1)
		go call()
	}
	time.Sleep(20 * time.Millisecond) // a caller that has not joined by then looks up itself, and panics the same
	close(release)
	wg.Wait()
	close(recovered)
	n := 0
	for p := range recovered {
		if p != "the parser choked" {
			t.Errorf("a caller recovered %v, want the lookup's panic", p)
		}
		n++
	}
	if n != callers {
		t.Errorf("%d callers recovered, want %d", n, callers)
	}
}
