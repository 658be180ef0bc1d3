package delivery_test

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
)

// call is one attempt the scripted channel got.
type call struct {
	engine  string // the engine that made it
	dest    string
	key     string // the notification's ordering key
	seq     int    // the notification's place in its key
	name    string // the notification's name
	id      string
	fields  map[string]string
	attempt int
	at      time.Time // on the fake clock
	ok      bool      // answered delivered
	body    *byte     // where the rendered payload the attempt got starts
}

// reply is how the scripted channel answers an attempt: delivered when
// err is nil; when hold is set, not before the gate is released.
type reply struct {
	err  error
	hold *gate
}

// fail answers an attempt with err.
func fail(err error) reply { return reply{err: err} }

// holdOn holds an attempt until g is released.
func holdOn(g *gate) reply { return reply{hold: g} }

// gate holds the attempts answered with it until it is released, then
// answers them with err.
type gate struct {
	c   chan struct{}
	err error
}

func newGate() *gate { return &gate{c: make(chan struct{})} }

// release answers the attempts held at the gate, and any later one, with
// err.
func (g *gate) release(err error) {
	g.err = err
	close(g.c)
}

// scripted is a Channel that answers each attempt as the test's script
// says and records every attempt, in the order they began.
type scripted struct {
	clock  *delivery.FakeClock
	format *notification.Format // what every attempt renders
	mu     sync.Mutex
	script func(c call) reply
	calls  []call
}

func newScripted(clock *delivery.FakeClock) *scripted {
	f, err := notification.NewFormat(notification.FormatNative, "", "")
	if err != nil {
		panic(err)
	}
	return &scripted{clock: clock, format: f, script: func(call) reply { return reply{} }}
}

// answer sets the script; until then every attempt is delivered.
func (s *scripted) answer(f func(c call) reply) {
	s.mu.Lock()
	s.script = f
	s.mu.Unlock()
}

// endpoint is the scripted channel as one engine sees it. Once its cable
// is cut the engine is dead: its attempts reach nothing and are not
// recorded, and an attempt held at a gate never answers.
type endpoint struct {
	s      *scripted
	engine string
	cable  *cable
}

// Deliver records the attempt and answers it as the script says.
func (e endpoint) Deliver(ctx context.Context, d *delivery.Delivery) (delivery.Response, error) {
	s := e.s
	if e.cable.isCut() {
		return e.never(ctx)
	}
	seq, _ := strconv.Atoi(d.Notification.Fields["seq"])
	body, _, err := d.Render(s.format)
	if err != nil {
		return delivery.Response{}, delivery.PermanentError("payload", err)
	}
	c := call{
		engine: e.engine, dest: d.DestinationID, key: d.Notification.OrderingKey, seq: seq,
		name: d.Notification.Name, id: d.Notification.ID, fields: d.Notification.Fields,
		attempt: d.Attempt, at: s.clock.Now(), body: &body[0],
	}
	s.mu.Lock()
	script := s.script
	i := len(s.calls)
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	r := script(c)
	err = r.err
	if r.hold != nil {
		select {
		case <-r.hold.c:
			err = r.hold.err
		case <-e.cable.dead:
		case <-ctx.Done():
		}
	}
	if e.cable.isCut() || ctx.Err() != nil {
		return e.never(ctx)
	}
	if err != nil {
		return delivery.Response{StatusCode: 500}, err
	}
	s.mu.Lock()
	s.calls[i].ok = true
	s.mu.Unlock()
	return delivery.Response{StatusCode: 200}, nil
}

// never is the answer a dead engine's attempt gets: none, until the
// engine is closed.
func (e endpoint) never(ctx context.Context) (delivery.Response, error) {
	<-ctx.Done()
	return delivery.Response{}, ctx.Err()
}

func (s *scripted) snapshot() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

// of returns the attempts at a notification, in order.
func (s *scripted) of(dest, key string, seq int) []call {
	var out []call
	for _, c := range s.snapshot() {
		if c.dest == dest && c.key == key && c.seq == seq {
			out = append(out, c)
		}
	}
	return out
}

// delivered reports whether the notification was delivered to dest.
func (s *scripted) delivered(dest, key string, seq int) bool {
	for _, c := range s.of(dest, key, seq) {
		if c.ok {
			return true
		}
	}
	return false
}

// firstDeliveries returns, per key, the sequence numbers of the key's
// notifications to dest in the order of their first delivery.
func (s *scripted) firstDeliveries(dest string) map[string][]int {
	seen := map[string]bool{}
	out := map[string][]int{}
	for _, c := range s.snapshot() {
		id := c.key + "#" + strconv.Itoa(c.seq)
		if c.dest != dest || !c.ok || seen[id] {
			continue
		}
		seen[id] = true
		out[c.key] = append(out[c.key], c.seq)
	}
	return out
}
