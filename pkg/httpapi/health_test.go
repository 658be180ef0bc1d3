package httpapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/httpapi"
)

func TestHealth(t *testing.T) {
	ok := func() error { return nil }
	fail := func(msg string) func() error { return func() error { return errors.New(msg) } }
	type check struct {
		name string
		fn   func() error
	}

	tests := []struct {
		name        string
		checks      []check
		wantReady   int
		wantFailing map[string]string
		wantErr     string // Health.Err's text; "" for nil
	}{
		{"no checks", nil, http.StatusOK, nil, ""},
		{"every check passes", []check{{"kafka", ok}, {"config", ok}}, http.StatusOK, nil, ""},
		{"one check fails", []check{{"kafka", ok}, {"config", fail("not caught up")}},
			http.StatusServiceUnavailable, map[string]string{"config": "not caught up"}, "config: not caught up"},
		{"every failing check is named; Err names the first added", []check{{"kafka", fail("no broker")}, {"config", fail("not caught up")}, {"registry", ok}},
			http.StatusServiceUnavailable, map[string]string{"kafka": "no broker", "config": "not caught up"}, "kafka: no broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &httpapi.Health{}
			for _, c := range tt.checks {
				h.AddCheck(c.name, c.fn)
			}
			mux := http.NewServeMux()
			h.Register(mux)

			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if w.Code != http.StatusOK {
				t.Errorf("/healthz = %d, want 200 whatever the checks say", w.Code)
			}

			w = httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if w.Code != tt.wantReady {
				t.Errorf("/readyz = %d, want %d", w.Code, tt.wantReady)
			}
			var body struct {
				Status  string            `json:"status"`
				Failing map[string]string `json:"failing"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("/readyz body %q: %v", w.Body, err)
			}
			if !reflect.DeepEqual(body.Failing, tt.wantFailing) {
				t.Errorf("/readyz names failing %v, want %v", body.Failing, tt.wantFailing)
			}

			// Run it more than once: the first failing check must not
			// depend on map order.
			for range 20 {
				err := h.Err()
				if got := errText(err); got != tt.wantErr {
					t.Fatalf("Err() = %q, want %q", got, tt.wantErr)
				}
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestConditionFailsWhileAnyHoldIsInPlace(t *testing.T) {
	var c httpapi.Condition
	if err := c.Check(); err != nil {
		t.Fatalf("new condition: %v", err)
	}
	r1 := c.Hold(errors.New("registry down"))
	r2 := c.Hold(errors.New("broker down"))
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Fatalf("two holds: %v, want the latest error", err)
	}
	r1()
	r1() // a second release of the same hold changes nothing
	if err := c.Check(); err == nil {
		t.Fatal("one hold left: ready")
	}
	r2()
	if err := c.Check(); err != nil {
		t.Fatalf("all released: %v", err)
	}
}
