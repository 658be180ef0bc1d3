package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/services/devstack"
)

// e2eFigures are the end-to-end latencies: POST accepted (its 202
// answered) to the receiver holding the notification.
type e2eFigures struct {
	Max   float64      `json:"max_events_per_s"`
	Loads []loadFigure `json:"loads"`
	// Floor are the same loads through the Kafka-only chain of startFloor.
	Floor []loadFigure `json:"floor_loads"`
}

type loadFigure struct {
	Share  float64 `json:"share_of_max"`
	Rate   float64 `json:"events_per_s"`
	Events int     `json:"events"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	// The same in two legs: to the evaluator making the notification
	// (its createdAt), and from there to the receiver.
	ToEvaluatorP50 float64 `json:"to_evaluator_p50_ms"`
	ToEvaluatorP99 float64 `json:"to_evaluator_p99_ms"`
	ToReceiverP50  float64 `json:"to_receiver_p50_ms"`
	ToReceiverP99  float64 `json:"to_receiver_p99_ms"`
}

// e2eKey is the demo tenant's API key in the run.
const e2eKey = "hk_bench_e2e"

// stack is every service of the devstack on the real broker, a webhook
// destination to a receiver in this process, and a rule that fires on
// every Balance update.
type stack struct {
	url    string // the HTTP API
	client *http.Client

	mu       sync.Mutex
	accepted map[string]time.Time
	received map[string]time.Time
	// made is when the evaluator made each event's notification.
	made map[string]time.Time
}

// runE2E measures the pipeline's maximum rate, unless given one, then its
// latencies at each share of it, each load for dur.
func runE2E(ctx context.Context, brokers []string, dur time.Duration, given float64, shares []float64) (e2eFigures, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, stopped, err := startStack(ctx, brokers)
	if err != nil {
		return e2eFigures{}, err
	}
	defer func() { cancel(); <-stopped }()

	f := e2eFigures{Max: given}
	if f.Max == 0 {
		// The maximum is what reaches the receiver while 64 clients post
		// as fast as ingest answers them, past the first second.
		if f.Max, err = s.max(ctx, dur); err != nil {
			return f, err
		}
		fmt.Printf("  end to end, most the pipeline delivers: %.0f events/s\n", f.Max)
	} else {
		fmt.Printf("  end to end, the maximum taken as given: %.0f events/s\n", f.Max)
	}
	// The floor runs beside the stack, each load right after Herald's,
	// so that both meet the host as it is then.
	floor, err := startFloor(ctx, brokers)
	if err != nil {
		return f, err
	}
	if err := floor.warm(ctx); err != nil {
		return f, fmt.Errorf("floor: %w", err)
	}
	for _, share := range shares {
		rate := share * f.Max
		l, err := s.measure(ctx, share, rate, dur, fmt.Sprintf("p%g", share))
		if err != nil {
			return f, err
		}
		fmt.Printf("  end to end at %3.0f%% of it (%5.0f events/s, %d events): p50 %.1f ms, p99 %.1f ms\n", 100*share, rate, l.Events, l.P50, l.P99)
		fmt.Printf("    202 to the notification made: p50 %.1f ms, p99 %.1f ms; made to received: p50 %.1f ms, p99 %.1f ms\n",
			l.ToEvaluatorP50, l.ToEvaluatorP99, l.ToReceiverP50, l.ToReceiverP99)
		f.Loads = append(f.Loads, l)
		l, err = floor.measure(ctx, share, rate, dur, fmt.Sprintf("floor-p%g", share))
		if err != nil {
			return f, fmt.Errorf("floor: %w", err)
		}
		fmt.Printf("    the Kafka-only floor at the same load: p50 %.1f ms, p99 %.1f ms (202 to copied: p50 %.1f, p99 %.1f; copied to received: p50 %.1f, p99 %.1f)\n",
			l.P50, l.P99, l.ToEvaluatorP50, l.ToEvaluatorP99, l.ToReceiverP50, l.ToReceiverP99)
		f.Floor = append(f.Floor, l)
	}
	return f, nil
}

func startStack(ctx context.Context, brokers []string) (*stack, <-chan error, error) {
	stopped := make(chan error, 1)
	s := &stack{
		client:   &http.Client{Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}},
		accepted: map[string]time.Time{}, received: map[string]time.Time{}, made: map[string]time.Time{},
	}
	receiver, err := listen(ctx, http.HandlerFunc(s.receive))
	if err != nil {
		return nil, nil, err
	}
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	s.url = "http://" + api.Addr().String()
	reg := srfake.New()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	ready := make(chan struct{})
	go func() {
		defer reg.Close()
		stopped <- devstack.RunServices(ctx, devstack.Services{
			Common: service.Config{
				Kafka: kafka.Config{Brokers: brokers, TopicPrefix: fmt.Sprintf("bench-e2e-%x.", suffix),
					Partitions: 6, ReplicationFactor: 1, CreateTopics: true},
				Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Minute},
				Secrets:  configstore.KeyConfig{Key: base64.StdEncoding.EncodeToString(key)},
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			},
			HTTP: api, APIKey: e2eKey,
			Ready: func(string) { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-stopped:
		return nil, nil, fmt.Errorf("the devstack's services stopped: %v", err)
	case <-time.After(2 * time.Minute):
		return nil, nil, fmt.Errorf("the devstack's services were not ready within 2 minutes")
	}
	var dest struct {
		ID string `json:"id"`
	}
	if err := s.call(ctx, "/v1/destinations", map[string]any{"type": "webhook", "name": "receiver", "concurrency": 64,
		"webhook": map[string]any{"url": "http://" + receiver + "/hook"}}, &dest); err != nil {
		return nil, nil, err
	}
	if err := s.call(ctx, "/v1/rules", map[string]any{"name": "every drop",
		"on":           map[string]any{"entityTypes": []string{"Balance"}, "operations": []string{"UPDATE"}},
		"when":         "new.remaining < old.remaining",
		"notification": map[string]any{"name": "UnitAllowanceThreshold", "state": "low"},
		"destinations": []string{dest.ID}}, nil); err != nil {
		return nil, nil, err
	}
	// The rule reaches the evaluator through the config topic.
	if err := s.warm(ctx); err != nil {
		return nil, nil, err
	}
	return s, stopped, nil
}

// warm posts events until one reaches the receiver, a minute at most.
func (s *stack) warm(ctx context.Context) error {
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		id := "warm-" + strconv.Itoa(i)
		if err := s.post(ctx, id, i); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
		s.mu.Lock()
		_, ok := s.received[id]
		s.mu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no notification reached the receiver within a minute")
		}
	}
}

// measure posts rate events per second for dur and returns their
// latencies, whole and in two legs.
func (s *stack) measure(ctx context.Context, share, rate float64, dur time.Duration, prefix string) (loadFigure, error) {
	ids, err := s.paced(ctx, rate, dur, prefix)
	if err != nil {
		return loadFigure{}, err
	}
	lat, err := s.latencies(ctx, ids)
	if err != nil {
		return loadFigure{}, err
	}
	l := loadFigure{Share: share, Rate: rate, Events: len(ids), P50: quantile(lat, 0.50), P99: quantile(lat, 0.99)}
	toEvaluator, toReceiver := s.legs(ids)
	l.ToEvaluatorP50, l.ToEvaluatorP99 = quantile(toEvaluator, 0.50), quantile(toEvaluator, 0.99)
	l.ToReceiverP50, l.ToReceiverP99 = quantile(toReceiver, 0.50), quantile(toReceiver, 0.99)
	return l, nil
}

// call POSTs body as JSON to the tenant API and decodes the answer into
// out.
func (s *stack) call(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	raw, err := s.do(ctx, path, b)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// do POSTs body to the tenant API and returns a 2xx answer's body.
func (s *stack) do(ctx context.Context, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+e2eKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode/100 != 2 {
		err = fmt.Errorf("POST %s: %s %s", path, resp.Status, raw)
	}
	return raw, err
}

// receive notes when each event's notification arrived.
func (s *stack) receive(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var n struct {
		CreatedAt time.Time `json:"createdAt"`
		Event     struct {
			ID string `json:"id"`
		} `json:"event"`
	}
	err := json.NewDecoder(r.Body).Decode(&n)
	_, _ = io.Copy(io.Discard, r.Body)
	if err == nil {
		s.mu.Lock()
		if _, dup := s.received[n.Event.ID]; !dup {
			s.received[n.Event.ID] = now
			s.made[n.Event.ID] = n.CreatedAt
		}
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// post sends event id, a Balance update of one of 1,000 accounts, and
// notes when its 202 came.
func (s *stack) post(ctx context.Context, id string, i int) error {
	acct := "acct-" + strconv.Itoa(i%1000)
	body := `{"eventId":"` + id + `","entityType":"Balance","entityId":"bal-` + acct + `","operation":"UPDATE","accountId":"` + acct + `",` +
		`"old":{"id":"bal","accountId":"` + acct + `","unit":"MB","total":1000,"used":400,"remaining":600},` +
		`"new":{"id":"bal","accountId":"` + acct + `","unit":"MB","total":1000,"used":500,"remaining":500}}`
	if _, err := s.do(ctx, "/v1/events", []byte(body)); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	s.accepted[id] = now
	s.mu.Unlock()
	return nil
}

// max posts from 64 clients as fast as ingest answers for dur and returns
// the notifications per second the receiver got past the first second;
// then it waits for the backlog to drain.
func (s *stack) max(ctx context.Context, dur time.Duration) (float64, error) {
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
		mu       sync.Mutex
		ids      []string
	)
	run, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	start := time.Now()
	for range 64 {
		wg.Go(func() {
			var mine []string
			defer func() { mu.Lock(); ids = append(ids, mine...); mu.Unlock() }()
			for run.Err() == nil {
				i := int(next.Add(1))
				id := "max-" + strconv.Itoa(i)
				if err := s.post(ctx, id, i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				mine = append(mine, id)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	from, to := start.Add(time.Second), start.Add(dur)
	s.mu.Lock()
	n := 0
	for _, at := range s.received {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	s.mu.Unlock()
	if _, err := s.latencies(ctx, ids); err != nil {
		return 0, err
	}
	return float64(n) / to.Sub(from).Seconds(), nil
}

// paced posts rate events per second for dur, each at its own time
// whatever the answers to the others, and returns their ids.
func (s *stack) paced(ctx context.Context, rate float64, dur time.Duration, prefix string) ([]string, error) {
	n := int(rate * dur.Seconds())
	if n < 1 {
		n = 1
	}
	ids := make([]string, n)
	work := make(chan int, n)
	var (
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	for range 64 {
		wg.Go(func() {
			for i := range work {
				if err := s.post(ctx, ids[i], i); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	start := time.Now()
	for i := range n {
		ids[i] = prefix + "-" + strconv.Itoa(i)
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return ids, firstErr
}

// legs splits the latencies of events received into the time from each
// POST's 202 to the evaluator making its notification, and from then to
// its arrival, in milliseconds, sorted; a leg below 0 counts as 0.
func (s *stack) legs(ids []string) (toEvaluator, toReceiver []float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := func(d time.Duration) float64 { return max(0, float64(d)/float64(time.Millisecond)) }
	for _, id := range ids {
		made, ok := s.made[id]
		if !ok {
			continue
		}
		toEvaluator = append(toEvaluator, ms(made.Sub(s.accepted[id])))
		toReceiver = append(toReceiver, ms(s.received[id].Sub(made)))
	}
	slices.Sort(toEvaluator)
	slices.Sort(toReceiver)
	return toEvaluator, toReceiver
}

// latencies waits for every event's notification (a minute at most) and
// returns the time from each POST's 202 to its arrival, in milliseconds,
// sorted; one that came before its 202 counts as 0.
func (s *stack) latencies(ctx context.Context, ids []string) ([]float64, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		missing := 0
		for _, id := range ids {
			if _, ok := s.received[id]; !ok {
				missing++
			}
		}
		s.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d notifications did not reach the receiver within a minute", missing, len(ids))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]float64, len(ids))
	for i, id := range ids {
		out[i] = max(0, float64(s.received[id].Sub(s.accepted[id]))/float64(time.Millisecond))
	}
	slices.Sort(out)
	return out, nil
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
