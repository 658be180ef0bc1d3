// Package httpapi holds what every Herald HTTP front door shares: problem+json
// errors (RFC 9457) with field paths, JSON request decoding with limits, API
// key authentication, the /healthz and /readyz endpoints, and a server that
// drains in-flight requests on shutdown.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// MaxBody bounds a request body.
const MaxBody = 1 << 20

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string       `json:"type,omitempty"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

// FieldError points at one invalid field of a request body.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Detail }

// NewProblem returns a problem with the status's standard title.
func NewProblem(status int, detail string, fields ...FieldError) *Problem {
	return &Problem{Title: http.StatusText(status), Status: status, Detail: detail, Errors: fields}
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteError writes err as a problem. A *Problem is written as it is; any
// other error becomes a 500 whose text is logged, never shown.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *Problem
	if errors.As(err, &p) {
		WriteProblem(w, p)
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		WriteProblem(w, NewProblem(http.StatusServiceUnavailable, "the request could not complete in time; retry"))
		return
	}
	log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	WriteProblem(w, NewProblem(http.StatusInternalServerError, "internal error"))
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads a JSON request body into v, refusing unknown fields,
// text that is not valid UTF-8, trailing data and bodies over MaxBody,
// with a *Problem that says why.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		return jsonProblem(err)
	}
	return Unmarshal(data, v)
}

// Unmarshal is DecodeJSON for a JSON value already read, such as one item
// of a batch.
func Unmarshal(data []byte, v any) error {
	if err := checkUTF8(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// Numbers in free-form objects stay exact (a long above 2^53 survives).
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return NewProblem(http.StatusBadRequest, "the body holds more than one JSON value")
	}
	return nil
}

// checkUTF8 returns a *Problem naming the first string of the JSON value
// in data, a member name or a value, that is not valid UTF-8 (or escapes
// half a surrogate pair), which encoding/json would decode with U+FFFD in
// place of each bad byte. Any other syntax error is left to the decoder.
func checkUTF8(data []byte) error {
	// A bad string needs bytes that are not UTF-8 or a \u escape (of half
	// a surrogate pair); most bodies have neither, and need no walk.
	if utf8.Valid(data) && !bytes.Contains(data, []byte(`\u`)) {
		return nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	for {
		if dec.PeekKind() == '"' {
			kind, n := dec.StackIndex(dec.StackDepth())
			isName := kind == '{' && n%2 == 0
			s, err := dec.ReadValue()
			if err != nil {
				return nil
			}
			if _, err := jsontext.AppendUnquote(nil, s); err != nil {
				msg := "is not valid UTF-8"
				if isName {
					msg = "is a name that is not valid UTF-8 (shown with U+FFFD for each bad byte)"
				}
				return NewProblem(http.StatusBadRequest, "the body has text that is not valid UTF-8",
					FieldError{Field: fieldPath(dec), Message: msg})
			}
		} else if _, err := dec.ReadToken(); err != nil {
			return nil
		}
		if dec.StackDepth() == 0 {
			return nil
		}
	}
}

// fieldPath returns the dotted path (on.entityTypes[2]) of the value dec
// read last.
func fieldPath(dec *jsontext.Decoder) string {
	var b strings.Builder
	depth := 0
	for name := range dec.StackPointer().Tokens() {
		depth++
		if kind, _ := dec.StackIndex(depth); kind == '[' {
			b.WriteString("[" + name + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(name)
	}
	return b.String()
}

func jsonProblem(err error) *Problem {
	var (
		syntax    *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		maxErr    *http.MaxBytesError
		field     string
		isUnknown = strings.HasPrefix(err.Error(), "json: unknown field ")
	)
	switch {
	case errors.As(err, &maxErr):
		return NewProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxErr.Limit))
	case errors.As(err, &syntax):
		return NewProblem(http.StatusBadRequest, fmt.Sprintf("the body is not valid JSON (at byte %d)", syntax.Offset))
	case errors.As(err, &typeErr):
		field = typeErr.Field
		return NewProblem(http.StatusBadRequest, "a field has the wrong type",
			FieldError{Field: field, Message: fmt.Sprintf("must be %s, not a JSON %s", typeErr.Type, typeErr.Value)})
	case isUnknown:
		field = strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return NewProblem(http.StatusBadRequest, "the body has an unknown field", FieldError{Field: field, Message: "unknown field"})
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return NewProblem(http.StatusBadRequest, "the body is empty or cut short")
	}
	return NewProblem(http.StatusBadRequest, "the body could not be read as JSON")
}

// Serve serves h on ln until ctx ends, then stops accepting and waits up to
// drain for requests in flight. A connection that was opened but never
// carried a request holds nothing: when only such connections remain at the
// deadline, they are closed and Serve returns nil. It returns an error only
// when a request was still being served.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, drain time.Duration, log *slog.Logger) error {
	var conns connStates
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         conns.track,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err == nil {
		return nil
	}
	// net/http waits up to 5s for a new connection's first request; one
	// that never sends any is not a request in flight.
	active := conns.active()
	_ = srv.Close()
	if errors.Is(err, context.DeadlineExceeded) && active == 0 {
		return nil
	}
	return fmt.Errorf("http shutdown with %d requests in flight: %w", active, err)
}

// connStates follows each connection's state, to tell a request in flight
// from a connection that never sent one.
type connStates struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (c *connStates) track(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		c.state = map[net.Conn]http.ConnState{}
	}
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(c.state, conn)
	default:
		c.state[conn] = s
	}
}

// active counts the connections serving a request.
func (c *connStates) active() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.state {
		if s == http.StateActive {
			n++
		}
	}
	return n
}
