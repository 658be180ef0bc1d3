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
}

// Key returns the document's record key in the config topic.
func (d Document) Key() string { return Key(d.Tenant, d.Kind, d.ID) }

// Key builds a config record key.
func Key(tenant, kind, id string) string { return tenant + "/" + kind + "/" + id }

// Store is a followed view of the config topic.
type Store struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger
	keys  *Keyring

	mu      sync.RWMutex
	docs    map[string]Document
	apiKeys map[string]Document // by key hash
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
		docs: map[string]Document{}, apiKeys: map[string]Document{},
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
	} else {
		s.mu.Lock()
		key := string(r.Key)
		if prev, ok := s.docs[key]; ok && prev.Kind == KindAPIKey {
			delete(s.apiKeys, prev.value.(APIKey).Hash)
		}
		if deleted {
			delete(s.docs, key)
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

// parseRecord turns a config record into a document; a tombstone yields the
// document named by the key with deleted set.
func parseRecord(r *kgo.Record, keys *Keyring) (doc Document, deleted bool, err error) {
	if r.Value == nil {
		parts := strings.SplitN(string(r.Key), "/", 3)
		if len(parts) != 3 {
			return doc, false, fmt.Errorf("tombstone key %q is not tenant/kind/id", r.Key)
		}
		return Document{Tenant: parts[0], Kind: parts[1], ID: parts[2]}, true, nil
	}
	if err := json.Unmarshal(r.Value, &doc); err != nil {
		return doc, false, fmt.Errorf("decode config document %q: %w", r.Key, err)
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

// Put writes doc, and returns it as stored once the view holds it. The
// version is the stored one plus one; when expect is not zero, Put fails with
// ErrVersionConflict unless the stored version equals expect.
func (s *Store) Put(ctx context.Context, doc Document, expect int64) (Document, error) {
	if _, err := decodeSpec(doc.Kind, doc.Spec); err != nil {
		return doc, fmt.Errorf("%s spec: %w", doc.Kind, err)
	}
	s.mu.RLock()
	prev, exists := s.docs[doc.Key()]
	s.mu.RUnlock()
	if expect != 0 && (!exists || prev.Version != expect) {
		return doc, ErrVersionConflict
	}
	doc.Version = prev.Version + 1
	doc.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
	stored := doc
	var err error
	if stored.Spec, err = sealSpec(s.keys, doc); err != nil {
		return doc, err
	}
	value, err := json.Marshal(stored)
	if err != nil {
		return doc, err
	}
	if err := s.produceAndWait(ctx, &kgo.Record{Topic: s.topic, Key: []byte(doc.Key()), Value: value}); err != nil {
		return doc, err
	}
	stored, _ = s.Get(doc.Tenant, doc.Kind, doc.ID)
	return stored, nil
}

// Delete writes a tombstone for the document and returns once the view has
// dropped it.
func (s *Store) Delete(ctx context.Context, tenant, kind, id string) error {
	if _, ok := s.Get(tenant, kind, id); !ok {
		return ErrNotFound
	}
	return s.produceAndWait(ctx, &kgo.Record{Topic: s.topic, Key: []byte(Key(tenant, kind, id))})
}

func (s *Store) produceAndWait(ctx context.Context, r *kgo.Record) error {
	if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("write config %s: %w", r.Key, err)
	}
	return s.pos.WaitApplied(ctx, r.Partition, r.Offset)
}

// Get returns the document tenant/kind/id.
func (s *Store) Get(tenant, kind, id string) (Document, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.docs[Key(tenant, kind, id)]
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
