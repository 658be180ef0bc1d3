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
	"time"
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
// trailing data and bodies over MaxBody, with a *Problem that says why.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeStrict(http.MaxBytesReader(w, r.Body, MaxBody), v)
}

// Unmarshal is DecodeJSON for a JSON value already read, such as one item
// of a batch.
func Unmarshal(data []byte, v any) error {
	return decodeStrict(bytes.NewReader(data), v)
}

func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
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
// drain for requests in flight.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, drain time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
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
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
