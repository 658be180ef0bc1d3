package subscription

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
)

// Store is a followed view of the subscriptions topic. The admin API
// writes with Put and Delete, which return once this view holds the
// change; the rule evaluator reads Destinations.
type Store struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger

	mu  sync.RWMutex
	idx *Index
	pos *kafka.Position
}

// Open returns a Store that consumes topic from its start with a client
// built from opts. Call Run to follow it.
func Open(opts []kgo.Opt, topic string, log *slog.Logger) (*Store, error) {
	opts = append(slices.Clip(opts),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A write waits for its own record to come back; don't let the
		// fetch sit on the broker waiting for more bytes.
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("subscription store client: %w", err)
	}
	return &Store{cl: cl, topic: topic, log: log, idx: NewIndex(), pos: kafka.NewPosition()}, nil
}

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
			s.log.Warn("subscriptions fetch", "topic", t, "partition", p, "err", err)
		})
		// One lock per fetch: a replay of millions of records takes it
		// thousands of times, not millions.
		s.mu.Lock()
		fetches.EachRecord(s.apply)
		s.mu.Unlock()
		s.pos.AdvanceFetches(fetches)
	}
}

// apply applies one record; s.mu is held.
func (s *Store) apply(r *kgo.Record) {
	res, name, err := parseKey(string(r.Key))
	if err != nil {
		s.log.Error("skip subscription record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	if r.Value == nil {
		s.idx.Delete(res, name)
		return
	}
	sub := Subscription{Tenant: res.Tenant, ResourceType: res.Type, ResourceID: res.ID, Notification: name}
	if err := json.Unmarshal(r.Value, &sub); err != nil || sub.WebhookURL == "" {
		s.log.Error("skip subscription record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return
	}
	s.idx.Put(sub)
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

// Put writes the subscription, replacing the resource's subscription to
// the same notification name, and returns once the view holds it.
func (s *Store) Put(ctx context.Context, sub Subscription) (Subscription, error) {
	sub.ResourceType = NormalizeType(sub.ResourceType)
	sub.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
	value, err := json.Marshal(sub)
	if err != nil {
		return sub, err
	}
	return sub, s.produceAndWait(ctx, &kgo.Record{Topic: s.topic, Key: []byte(sub.Key()), Value: value})
}

// Delete writes a tombstone for the subscription and returns once the
// view has dropped it; ErrNotFound when there is none.
func (s *Store) Delete(ctx context.Context, r Resource, name string) error {
	s.mu.RLock()
	_, ok := s.idx.Ref(r, name)
	s.mu.RUnlock()
	if !ok {
		return ErrNotFound
	}
	return s.produceAndWait(ctx, &kgo.Record{Topic: s.topic, Key: []byte(Key(r, name))})
}

func (s *Store) produceAndWait(ctx context.Context, r *kgo.Record) error {
	if err := s.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("write subscription %s: %w", r.Key, err)
	}
	return s.pos.WaitApplied(ctx, r.Partition, r.Offset)
}

// List returns the resource's subscriptions, ordered by notification
// name.
func (s *Store) List(r Resource) []Subscription {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.List(r)
}

// Len returns the number of subscriptions in the view.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.idx.Len()
}

// Destinations returns n's destinations with those of the subscriptions
// to n's name on the resource n is about (its event's entity type and id)
// and, when the event names a device, on that SIM; each reference once.
func (s *Store) Destinations(n *notification.Notification) []string {
	resources := []Resource{{n.TenantID, n.Event.EntityType, n.Event.EntityID}}
	if d := n.Event.DeviceID; d != nil && *d != "" {
		resources = append(resources, Resource{n.TenantID, SimResourceType, *d})
	}
	out := n.Destinations
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range resources {
		ref, ok := s.idx.Ref(r, n.Name)
		if ok && !slices.Contains(out, ref) {
			// Copy before the first append: out may share the rule's
			// own slice.
			out = append(slices.Clip(out), ref)
		}
	}
	return out
}
