// Package configstore is Herald's configuration: documents in the compacted
// config topic, followed by every service as an in-memory view.
//
// A Document is keyed "{tenant}/{kind}/{id}" and carries a JSON spec whose
// type depends on its kind (Tenant, APIKey, Rule, Destination). The admin API
// writes with Put and Delete (a tombstone); both return once this Store's
// own view holds the change, so a read right after a write sees it. Every
// other service runs a Store too and reads from its view: Open, WaitCaughtUp
// before serving, Run to keep following. OnApply hooks let a service keep
// derived state (such as compiled rules) in step with the view. With a
// Keyring (WithKeyring), the specs of kinds that hold secrets are sealed in
// the topic and opened as they are read (seal.go).
package configstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/kafka"
)

// ErrNotFound is returned for a document that does not exist.
var ErrNotFound = errors.New("not found")

// ErrVersionConflict is returned by Put when the stored version differs from
// the one the writer read.
var ErrVersionConflict = errors.New("version conflict")

// Document is one configuration item.
type Document struct {
	Kind      string          `json:"kind"`
	Tenant    string          `json:"tenant"`
	ID        string          `json:"id"`
	Version   int64           `json:"version"`
	UpdatedAt time.Time       `json:"updatedAt"`
	Spec      json.RawMessage `json:"spec"`

	// value is Spec decoded into the kind's type, set when applied.
	value any
	// at is where the view applied the document from.
	at recordAt
}

// recordAt is a record's place in the config topic.
type recordAt struct {
	partition int32
	offset    int64
}

// stored is a document as the topic holds it. A deletion is written first
// as a marker with the version it makes, so that it is ordered against
// concurrent writes like any other, then as a tombstone, which compaction
// keeps.
type stored struct {
	Document
	Deleted bool `json:"deleted,omitempty"`
}

// Key returns the document's record key in the config topic.
func (d Document) Key() string { return Key(d.Tenant, d.Kind, d.ID) }

// Key builds a config record key.
func Key(tenant, kind, id string) string { return tenant + "/" + kind + "/" + id }

// appendKey appends Key(tenant, kind, id) to b.
func appendKey(b []byte, tenant, kind, id string) []byte {
	return append(append(append(append(append(b, tenant...), '/'), kind...), '/'), id...)
}

// Store is a followed view of the config topic.
type Store struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger
	keys  *Keyring

	mu      sync.RWMutex
	docs    map[string]Document
	apiKeys map[string]Document // by key hash
	// graves holds the version of each deletion the view applied: a write
	// of that version or below, racing the deletion, loses to it, and a
	// document made again afterwards starts above it.
	graves  map[string]int64
	pos     *kafka.Position
	onApply []func(doc Document, deleted bool)
	// fatal stops Run: a record the view cannot open, which it must not
	// skip.
	fatal error
}

// Option configures a Store.
type Option func(*Store)

// WithKeyring seals the specs of documents that hold secrets with k, and
// opens sealed records with it. Without a keyring, documents are written in
// the clear (tests), and a sealed record stops Run.
func WithKeyring(k *Keyring) Option { return func(s *Store) { s.keys = k } }

// Open returns a Store that consumes topic from its start with a client built
// from opts. Call Run to follow the topic.
func Open(opts []kgo.Opt, topic string, log *slog.Logger, options ...Option) (*Store, error) {
	opts = append(slices.Clip(opts),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A write waits for its own record to come back; don't let the
		// fetch sit on the broker waiting for more bytes.
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("config store client: %w", err)
	}
	s := &Store{
		cl: cl, topic: topic, log: log,
		docs: map[string]Document{}, apiKeys: map[string]Document{}, graves: map[string]int64{},
		pos: kafka.NewPosition(),
	}
	for _, o := range options {
		o(s)
	}
	return s, nil
}

// OnApply registers fn to be called, in topic order, for each document the
// view applies. Register hooks before Run.
func (s *Store) OnApply(fn func(doc Document, deleted bool)) { s.onApply = append(s.onApply, fn) }

// Close releases the client.
func (s *Store) Close() { s.cl.Close() }

// Run follows the topic until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	for {
		fetches := s.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			s.log.Warn("config fetch", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(s.apply)
		if s.fatal != nil {
			return s.fatal
		}
	}
}

func (s *Store) apply(r *kgo.Record) {
	if s.fatal != nil {
		return
	}
	doc, deleted, err := parseRecord(r, s.keys)
	if errors.Is(err, ErrNoKey) {
		// Skipping it would leave the view without the document (or with
		// an old version of it) for good.
		s.fatal = fmt.Errorf("config record at %s/%d/%d: %w", r.Topic, r.Partition, r.Offset, err)
		return
	}
	if err != nil {
		s.log.Error("skip config record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
	} else if s.applies(string(r.Key), doc, deleted, r.Value == nil) {
		doc.at = recordAt{r.Partition, r.Offset}
		s.mu.Lock()
		key := string(r.Key)
		if prev, ok := s.docs[key]; ok && prev.Kind == KindAPIKey {
			delete(s.apiKeys, prev.value.(APIKey).Hash)
		}
		if deleted {
			delete(s.docs, key)
			if r.Value != nil {
				s.graves[key] = doc.Version
			}
		} else {
			s.docs[key] = doc
			if k, ok := doc.value.(APIKey); ok {
				s.apiKeys[k.Hash] = doc
			}
		}
		s.mu.Unlock()
		for _, fn := range s.onApply {
			fn(doc, deleted)
		}
	}
	// The offset moves only after the hooks ran, so a writer waiting for
	// its record also waits for the state the hooks derive from it.
	s.pos.Advance(r.Partition, r.Offset+1)
}

// applies reports whether a record changes the view. Every write carries
// the version it makes, and a view takes only a version above the one it
// holds: when two writers (admin-API replicas) write the same version, the
// first in the topic's order wins in every view, and the second changes
// nothing. A tombstone follows a deletion that won; it deletes what the
// view still holds (a view that replays a compacted topic).
func (s *Store) applies(key string, doc Document, deleted, tombstone bool) bool {
	s.mu.RLock()
	cur, exists := s.docs[key]
	s.mu.RUnlock()
	if tombstone {
		return exists
	}
	if !exists {
		// A deletion marker of a document the view does not hold changes
		// nothing; anything else is the document's first version here,
		// unless a deletion of its version won the race.
		s.mu.RLock()
		grave := s.graves[key]
		s.mu.RUnlock()
		return !deleted && doc.Version > grave
	}
	return doc.Version > cur.Version
}

// parseRecord turns a config record into a document; a tombstone or a
// deletion marker yields the document named by the key with deleted set.
func parseRecord(r *kgo.Record, keys *Keyring) (doc Document, deleted bool, err error) {
	if r.Value == nil {
		parts := strings.SplitN(string(r.Key), "/", 3)
		if len(parts) != 3 {
			return doc, false, fmt.Errorf("tombstone key %q is not tenant/kind/id", r.Key)
		}
		return Document{Tenant: parts[0], Kind: parts[1], ID: parts[2]}, true, nil
	}
	var st stored
	if err := json.Unmarshal(r.Value, &st); err != nil {
		return doc, false, fmt.Errorf("decode config document %q: %w", r.Key, err)
	}
	doc = st.Document
	if st.Deleted {
		return doc, true, nil
	}
	if doc.Spec, err = openSpec(keys, string(r.Key), doc.Spec); err != nil {
		return doc, false, fmt.Errorf("open %s spec %q: %w", doc.Kind, r.Key, err)
	}
	if doc.value, err = decodeSpec(doc.Kind, doc.Spec); err != nil {
		return doc, false, fmt.Errorf("decode %s spec %q: %w", doc.Kind, r.Key, err)
	}
	return doc, false, nil
}

// WaitCaughtUp blocks until the view holds every record that was in the
// topic when it was called.
func (s *Store) WaitCaughtUp(ctx context.Context) error {
	return s.pos.WaitCaughtUp(ctx, s.cl, s.topic)
}

// CaughtUp reports whether WaitCaughtUp has succeeded once.
func (s *Store) CaughtUp() bool { return s.pos.CaughtUp() }

// Mark returns how far the view has applied the topic now.
func (s *Store) Mark() kafka.Mark { return s.pos.Mark() }

// CatchUp is WaitCaughtUp, returning the topic's end offsets it waited
// for: a Mark taken earlier that covers them means the view held then
// everything it holds now of what was written before CatchUp was called.
func (s *Store) CatchUp(ctx context.Context) (kafka.Mark, error) {
	return s.pos.CatchUp(ctx, s.cl, s.topic)
}

// Absent is the version Put expects of a document that must not exist yet:
// a create that two writers may race on the same id.
const Absent int64 = -1

// Put writes doc, and returns it as stored once the view holds it. The
// version is the stored one plus one; when expect is not zero, Put fails with
// ErrVersionConflict unless the stored version equals expect (or, for
// Absent, unless there is none).
//
// Several writers may race (admin-API replicas). The first write of a
// version in the topic's order wins in every view (applies); Put reads
// back which one won. A conditional write that lost fails with
// ErrVersionConflict; an unconditional one is written again on the newer
// version.
func (s *Store) Put(ctx context.Context, doc Document, expect int64) (Document, error) {
	if _, err := decodeSpec(doc.Kind, doc.Spec); err != nil {
		return doc, fmt.Errorf("%s spec: %w", doc.Kind, err)
	}
	for range 5 {
		prev, exists := s.Get(doc.Tenant, doc.Kind, doc.ID)
		switch {
		case expect == Absent && exists, expect > 0 && (!exists || prev.Version != expect):
			return doc, ErrVersionConflict
		}
		doc.Version = prev.Version + 1
		if !exists {
			s.mu.RLock()
			doc.Version = s.graves[doc.Key()] + 1
			s.mu.RUnlock()
		}
		doc.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
		won, err := s.write(ctx, doc, false)
		if err != nil {
			return doc, err
		}
		if won {
			cur, _ := s.Get(doc.Tenant, doc.Kind, doc.ID)
			return cur, nil
		}
		if expect != 0 {
			return doc, ErrVersionConflict
		}
	}
	return doc, ErrVersionConflict
}

// Delete deletes the document and returns once the view has dropped it.
// When expect is not zero, it fails with ErrVersionConflict unless the
// stored version equals expect, in the topic's order as Put does.
func (s *Store) Delete(ctx context.Context, tenant, kind, id string) error {
	return s.DeleteVersion(ctx, tenant, kind, id, 0)
}

// DeleteVersion is Delete with the version the caller read (0: any).
func (s *Store) DeleteVersion(ctx context.Context, tenant, kind, id string, expect int64) error {
	for range 5 {
		prev, ok := s.Get(tenant, kind, id)
		switch {
		case !ok:
			return ErrNotFound
		case expect != 0 && prev.Version != expect:
			return ErrVersionConflict
		}
		marker := Document{Tenant: tenant, Kind: kind, ID: id, Version: prev.Version + 1, UpdatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		won, err := s.write(ctx, marker, true)
		if err != nil {
			return err
		}
		if won {
			// The tombstone is what compaction keeps of a deletion.
			return s.produceAndWait(ctx, &kgo.Record{Topic: s.topic, Key: []byte(Key(tenant, kind, id))})
		}
		if expect != 0 {
			return ErrVersionConflict
		}
	}
	return ErrVersionConflict
}

// write writes doc (or a deletion marker for it) and reports whether it
// won: whether the view applied it. A record that lost is followed by a
// copy of what won, so that the last record of the key, the one compaction
// keeps, is what every view holds.
func (s *Store) write(ctx context.Context, doc Document, deleted bool) (bool, error) {
	r, err := s.record(doc, deleted)
	if err != nil {
		return false, err
	}
	if err := s.produceAndWait(ctx, r); err != nil {
		return false, err
	}
	at := recordAt{r.Partition, r.Offset}
	cur, exists := s.Get(doc.Tenant, doc.Kind, doc.ID)
	if deleted && !exists || !deleted && exists && cur.at == at {
		return true, nil
	}
	return false, s.repair(ctx, doc.Key(), at)
}

// repair writes the view's document of key again after the record at lost,
// until the copy written is newer in the topic than the document it copies.
func (s *Store) repair(ctx context.Context, key string, lost recordAt) error {
	after := lost
	for range 5 {
		s.mu.RLock()
		cur, exists := s.docs[key]
		s.mu.RUnlock()
		var r *kgo.Record
		if !exists {
			r = &kgo.Record{Topic: s.topic, Key: []byte(key)}
		} else {
			if cur.at.partition == after.partition && cur.at.offset > after.offset {
				return nil // a newer write is the key's last record
			}
			var err error
			if r, err = s.record(cur, false); err != nil {
				return err
			}
		}
		if err := s.produceAndWait(ctx, r); err != nil {
			return err
		}
		after = recordAt{r.Partition, r.Offset}
		s.mu.RLock()
		now, stillExists := s.docs[key]
		s.mu.RUnlock()
		if stillExists == exists && (!exists || now.at == cur.at) {
			return nil // nothing landed between: the copy is the last record
		}
	}
	return errors.New("the document kept changing")
}

// record is the config record of doc, or of a deletion marker for it.
func (s *Store) record(doc Document, deleted bool) (*kgo.Record, error) {
	st := stored{Document: doc, Deleted: deleted}
	if deleted {
		st.Spec = nil
	} else {
		var err error
		if st.Spec, err = sealSpec(s.keys, doc); err != nil {
			return nil, err
		}
	}
	value, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: s.topic, Key: []byte(doc.Key()), Value: value}, nil
}

func (s *Store) produceAndWait(ctx context.Context, r *kgo.Record) error {
	if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("write config %s: %w", r.Key, err)
	}
	return s.pos.WaitApplied(ctx, r.Partition, r.Offset)
}

// Get returns the document tenant/kind/id.
func (s *Store) Get(tenant, kind, id string) (Document, bool) {
	// The key is put together on the stack: a lookup, which every
	// delivery attempt makes, leaves no garbage.
	var buf [256]byte
	key := appendKey(buf[:0], tenant, kind, id)
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.docs[string(key)]
	return d, ok
}

// List returns the tenant's documents of a kind, ordered by id.
func (s *Store) List(tenant, kind string) []Document {
	prefix := tenant + "/" + kind + "/"
	s.mu.RLock()
	var out []Document
	for k, d := range s.docs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, d)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Document) int { return strings.Compare(a.ID, b.ID) })
	return out
}
