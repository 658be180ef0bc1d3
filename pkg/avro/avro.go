// Package avro is Herald's registry-aware Avro codec.
//
// Records on Herald's topics use the Confluent wire format: a zero byte, the
// writer schema's registry id (big endian uint32), then the Avro binary body.
// Registry fetches schemas by id and caches them for good (ids are
// immutable), and caches each subject's latest version for a short time so
// that a new version registered upstream is picked up without a restart.
// Decode reads a record with its writer's schema into generic Go values
// (map[string]any, int64, float64, string, bool, time.Time, nil), which is
// what rules evaluate; Encode writes a value with a subject's latest schema.
package avro

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/singleflight"
)

// ErrSubjectNotFound is returned when the registry has no such subject.
var ErrSubjectNotFound = errors.New("schema subject not found")

// WireError reports a record whose bytes are not in the Confluent wire
// format or whose body does not decode with its writer schema.
type WireError struct {
	Reason string
	Err    error
}

func (e *WireError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *WireError) Unwrap() error { return e.Err }

// Schema is one registered schema: its id and the parsed schema.
type Schema struct {
	ID     int
	Schema *avro.Schema
}

// Encode returns v encoded with s in the Confluent wire format.
func (s Schema) Encode(v any) ([]byte, error) {
	bp := encodeBuffers.Get().(*[]byte)
	var h sr.ConfluentHeader
	b, _ := h.AppendEncode((*bp)[:0], s.ID, nil)
	b, err := s.Schema.AppendEncode(b, v)
	var out []byte
	if err == nil {
		out = append(make([]byte, 0, len(b)), b...)
	}
	if cap(b) <= maxKeptBuffer {
		*bp = b[:0]
		encodeBuffers.Put(bp)
	}
	return out, err
}

// encodeBuffers are what Encode writes into before it copies the value out
// at its size: each value is then allocated once, at its size, instead of
// grown from a guess. A buffer over maxKeptBuffer is left to the collector.
var encodeBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxKeptBuffer = 64 << 10

// Registry reads and registers schemas, with caches in front of the client.
type Registry struct {
	cl        *sr.Client
	latestTTL time.Duration

	mu       sync.RWMutex
	byID     map[int]*avro.Schema
	latest   map[string]latestEntry
	versions map[string]versionsEntry
	// fetches asks the registry once for what many callers miss at the
	// same time: at start, or when a latest version's TTL passes, every
	// worker misses together.
	fetches singleflight.Group
}

type versionsEntry struct {
	schemas []Schema
	fetched time.Time
}

type latestEntry struct {
	schema  Schema
	fetched time.Time
}

// NewRegistry returns a Registry using cl. latestTTL bounds how long a
// subject's latest version is reused before the registry is asked again.
// cl should bound each request (sr.HTTPClient with a timeout): a lookup
// that callers share runs to its end even when they all give up.
func NewRegistry(cl *sr.Client, latestTTL time.Duration) *Registry {
	return &Registry{cl: cl, latestTTL: latestTTL, byID: map[int]*avro.Schema{}, latest: map[string]latestEntry{}, versions: map[string]versionsEntry{}}
}

// Client returns the underlying registry client.
func (r *Registry) Client() *sr.Client { return r.cl }

// ByID returns the schema registered under id.
func (r *Registry) ByID(ctx context.Context, id int) (*avro.Schema, error) {
	r.mu.RLock()
	s, ok := r.byID[id]
	r.mu.RUnlock()
	if ok {
		return s, nil
	}
	return fetchOnce(ctx, r, "id "+strconv.Itoa(id), func(ctx context.Context) (*avro.Schema, error) { return r.fetchByID(ctx, id) })
}

func (r *Registry) fetchByID(ctx context.Context, id int) (*avro.Schema, error) {
	text, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		if registryCode(err) == sr.ErrSchemaNotFound.Code {
			return nil, &WireError{Reason: fmt.Sprintf("unknown schema id %d", id), Err: err}
		}
		return nil, fmt.Errorf("fetch schema %d: %w", id, err)
	}
	s, err := avro.Parse(text.Schema)
	if err != nil {
		return nil, &WireError{Reason: fmt.Sprintf("schema %d does not parse", id), Err: err}
	}
	r.mu.Lock()
	r.byID[id] = s
	r.mu.Unlock()
	return s, nil
}

// Latest returns the newest schema registered under subject.
func (r *Registry) Latest(ctx context.Context, subject string) (Schema, error) {
	r.mu.RLock()
	e, ok := r.latest[subject]
	r.mu.RUnlock()
	if ok && time.Since(e.fetched) < r.latestTTL {
		return e.schema, nil
	}
	return fetchOnce(ctx, r, "latest "+subject, func(ctx context.Context) (Schema, error) { return r.fetchLatest(ctx, subject) })
}

func (r *Registry) fetchLatest(ctx context.Context, subject string) (Schema, error) {
	ss, err := r.cl.SchemaByVersion(ctx, subject, -1)
	if err != nil {
		if c := registryCode(err); c == sr.ErrSubjectNotFound.Code || c == sr.ErrVersionNotFound.Code {
			return Schema{}, fmt.Errorf("%s: %w", subject, ErrSubjectNotFound)
		}
		return Schema{}, fmt.Errorf("fetch latest schema of %s: %w", subject, err)
	}
	s, err := r.ByID(ctx, ss.ID)
	if err != nil {
		return Schema{}, err
	}
	e := latestEntry{schema: Schema{ID: ss.ID, Schema: s}, fetched: time.Now()}
	r.mu.Lock()
	r.latest[subject] = e
	r.mu.Unlock()
	return e.schema, nil
}

// fetchOnce runs fetch for key unless a fetch for key is under way, and
// then waits for that one's result instead. The fetch runs without the
// cancellation of the caller that started it, so that one caller giving
// up fails none of the others; each waits only as long as its own ctx
// allows. A panic in fetch is raised again in each caller, as if each
// had made the lookup itself, so that a caller that recovers from a
// panic (the evaluator, judging an event) still can.
func fetchOnce[T any](ctx context.Context, r *Registry, key string, fetch func(context.Context) (T, error)) (T, error) {
	ch := r.fetches.DoChan(key, func() (v any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fetchPanic{p}
			}
		}()
		return fetch(context.WithoutCancel(ctx))
	})
	select {
	case res := <-ch:
		if p, ok := res.Err.(fetchPanic); ok {
			panic(p.value)
		}
		v, _ := res.Val.(T)
		return v, res.Err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// fetchPanic carries a panic in a shared lookup to the callers waiting on
// it.
type fetchPanic struct{ value any }

func (p fetchPanic) Error() string { return fmt.Sprintf("registry lookup panicked: %v", p.value) }

// Versions returns every version registered under subject, oldest first,
// cached like Latest. fresh skips the cache.
func (r *Registry) Versions(ctx context.Context, subject string, fresh bool) ([]Schema, error) {
	r.mu.RLock()
	e, ok := r.versions[subject]
	r.mu.RUnlock()
	if ok && !fresh && time.Since(e.fetched) < r.latestTTL {
		return e.schemas, nil
	}
	all, err := r.cl.Schemas(ctx, subject)
	if err != nil {
		if c := registryCode(err); c == sr.ErrSubjectNotFound.Code || c == sr.ErrVersionNotFound.Code {
			return nil, fmt.Errorf("%s: %w", subject, ErrSubjectNotFound)
		}
		return nil, fmt.Errorf("fetch versions of %s: %w", subject, err)
	}
	e = versionsEntry{fetched: time.Now()}
	for _, ss := range all {
		s, err := r.ByID(ctx, ss.ID)
		if err != nil {
			return nil, err
		}
		e.schemas = append(e.schemas, Schema{ID: ss.ID, Schema: s})
	}
	r.mu.Lock()
	r.versions[subject] = e
	r.mu.Unlock()
	return e.schemas, nil
}

// Subjects returns the registry's subjects.
func (r *Registry) Subjects(ctx context.Context) ([]string, error) {
	subjects, err := r.cl.Subjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("list subjects: %w", err)
	}
	return subjects, nil
}

// Decode decodes a wire-format record into v with its writer's schema and
// returns the writer schema. Malformed input is reported as a *WireError.
func (r *Registry) Decode(ctx context.Context, b []byte, v any) (*avro.Schema, error) {
	w, err := r.Writer(ctx, b)
	if err != nil {
		return nil, err
	}
	return w.Schema, w.Decode(v)
}

// Writer returns a wire-format record's body with its writer's schema, so
// that the body can be decoded more than once, or in part. Malformed input
// is reported as a *WireError.
func (r *Registry) Writer(ctx context.Context, b []byte) (Body, error) {
	var h sr.ConfluentHeader
	id, body, err := h.DecodeID(b)
	if err != nil {
		return Body{}, &WireError{Reason: "not in the Confluent wire format (magic byte, schema id)", Err: err}
	}
	s, err := r.ByID(ctx, id)
	if err != nil {
		return Body{}, err
	}
	return Body{ID: id, Schema: s, Bytes: body}, nil
}

// Body is a record's Avro body and the schema it was written with.
type Body struct {
	ID     int
	Schema *avro.Schema
	Bytes  []byte
}

// Decode decodes the whole body into v, which may be a struct that holds
// only some of the record's fields (the others are skipped) or a generic
// value (any). Malformed input is reported as a *WireError.
func (b Body) Decode(v any) error {
	var opts []avro.Opt
	if !isGeneric(v) {
		opts = append(opts, avro.SkipUnknown())
	}
	rest, err := b.Schema.Decode(b.Bytes, v, opts...)
	if err != nil {
		return &WireError{Reason: fmt.Sprintf("body does not decode with schema %d", b.ID), Err: err}
	}
	if len(rest) != 0 {
		return &WireError{Reason: fmt.Sprintf("%d bytes left after decoding with schema %d", len(rest), b.ID)}
	}
	return nil
}

// isGeneric reports whether v points to an interface, which takes every
// field of a record.
func isGeneric(v any) bool {
	_, ok := v.(*any)
	return ok
}

// Register registers each version of a record under subject, oldest first,
// unless the registry already has it, and sets the subject's compatibility
// level. Registering a schema the subject already holds is a no-op in the
// registry, so Register is safe to run at every start.
func (r *Registry) Register(ctx context.Context, subject string, versions []string, compat sr.CompatibilityLevel) error {
	for i, text := range versions {
		if _, err := r.cl.CreateSchema(ctx, subject, sr.Schema{Schema: text, Type: sr.TypeAvro}); err != nil {
			return fmt.Errorf("register %s version %d: %w", subject, i+1, err)
		}
		if i == 0 {
			for _, res := range r.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: compat}, subject) {
				if res.Err != nil {
					return fmt.Errorf("set compatibility of %s: %w", subject, res.Err)
				}
			}
		}
	}
	return nil
}

// registryCode returns the registry's error code carried by err, or 0.
func registryCode(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}
