package httpapi

import (
	"fmt"
	"net/http"
	"sync"
)

// Health serves /healthz (the process is up) and /readyz (every readiness
// check passes: Kafka reachable, configuration caught up, and so on).
type Health struct {
	mu     sync.Mutex
	checks []check
}

type check struct {
	name string
	fn   func() error
}

// AddCheck adds a readiness check.
func (h *Health) AddCheck(name string, fn func() error) {
	h.mu.Lock()
	h.checks = append(h.checks, check{name, fn})
	h.mu.Unlock()
}

// Register adds the health routes to mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", h.ready)
}

// Err returns nil when every check passes, else an error naming the first
// failing one.
func (h *Health) Err() error {
	failing := h.failing()
	h.mu.Lock()
	defer h.mu.Unlock()
	// In the order checks were added: a map's order would name a different
	// check from one call to the next.
	for _, c := range h.checks {
		if msg, ok := failing[c.name]; ok {
			return fmt.Errorf("%s: %s", c.name, msg)
		}
	}
	return nil
}

func (h *Health) failing() map[string]string {
	h.mu.Lock()
	checks := append([]check(nil), h.checks...)
	h.mu.Unlock()
	failing := map[string]string{}
	for _, c := range checks {
		if err := c.fn(); err != nil {
			failing[c.name] = err.Error()
		}
	}
	return failing
}

func (h *Health) ready(w http.ResponseWriter, _ *http.Request) {
	if failing := h.failing(); len(failing) > 0 {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": failing})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Condition is a readiness check that work sets while it is held up by a
// failure that should pass (a broker or registry out of reach): the check
// fails while any hold is in place, with the error of the latest.
type Condition struct {
	mu   sync.Mutex
	held int
	last error
}

// Hold marks the work held up by err until the returned release is called.
func (c *Condition) Hold(err error) (release func()) {
	c.mu.Lock()
	c.held++
	c.last = err
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.held--
			c.mu.Unlock()
		})
	}
}

// Check returns nil unless a hold is in place.
func (c *Condition) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held > 0 {
		return fmt.Errorf("held up: %w", c.last)
	}
	return nil
}
