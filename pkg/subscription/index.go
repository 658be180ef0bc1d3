package subscription

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
)

// Index holds subscriptions compactly. A subscription is one entry of
// subs, from a packed key (scope number, name number, resource id) to a
// target number; scopes (tenant and resource type), notification names
// and targets (format and URL, as a destination reference) are interned,
// so a resource id is the only string stored per subscription. Index is
// not safe for concurrent use; Store guards it.
type Index struct {
	scopes  interner // tenant "\x00" resource type
	names   interner // notification names
	targets refcounted
	subs    map[string]uint32
	// scopeNames lists the names used in each scope, so a resource's
	// subscriptions are found by one lookup per name.
	scopeNames map[uint32][]uint32
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{subs: map[string]uint32{}, scopeNames: map[uint32][]uint32{}}
}

// Len returns the number of subscriptions.
func (x *Index) Len() int { return len(x.subs) }

// packKey appends the packed key of a resource's subscription to a name.
func packKey(b []byte, scope, name uint32, id string) []byte {
	b = binary.BigEndian.AppendUint32(b, scope)
	b = binary.BigEndian.AppendUint32(b, name)
	return append(b, id...)
}

func scopeOf(r Resource) string { return r.Tenant + "\x00" + NormalizeType(r.Type) }

// Put adds or replaces the subscription.
func (x *Index) Put(s Subscription) {
	r := Resource{s.Tenant, s.ResourceType, s.ResourceID}
	scope := x.scopes.intern(scopeOf(r))
	name := x.names.intern(s.Notification)
	if !slices.Contains(x.scopeNames[scope], name) {
		x.scopeNames[scope] = append(x.scopeNames[scope], name)
	}
	key := string(packKey(make([]byte, 0, 8+len(s.ResourceID)), scope, name, s.ResourceID))
	target := x.targets.acquire(s.Ref())
	if old, ok := x.subs[key]; ok {
		x.targets.release(old)
	}
	x.subs[key] = target
}

// Delete removes the subscription and reports whether it existed.
func (x *Index) Delete(r Resource, name string) bool {
	key, ok := x.key(nil, r, name)
	if !ok {
		return false
	}
	target, ok := x.subs[string(key)]
	if ok {
		delete(x.subs, string(key))
		x.targets.release(target)
	}
	return ok
}

// key returns the packed key of a subscription, false when its scope or
// name was never seen (so it cannot exist).
func (x *Index) key(b []byte, r Resource, name string) ([]byte, bool) {
	scope, ok1 := x.scopes.lookup(scopeOf(r))
	n, ok2 := x.names.lookup(name)
	if !ok1 || !ok2 {
		return nil, false
	}
	return packKey(b, scope, n, r.ID), true
}

// Ref returns the destination reference of the resource's subscription
// to the name.
func (x *Index) Ref(r Resource, name string) (string, bool) {
	var buf [64]byte
	key, ok := x.key(buf[:0], r, name)
	if !ok {
		return "", false
	}
	t, ok := x.subs[string(key)]
	if !ok {
		return "", false
	}
	return x.targets.value(t), true
}

// List returns the resource's subscriptions, ordered by notification
// name.
func (x *Index) List(r Resource) []Subscription {
	scope, ok := x.scopes.lookup(scopeOf(r))
	if !ok {
		return nil
	}
	var out []Subscription
	var buf [64]byte
	for _, n := range x.scopeNames[scope] {
		t, ok := x.subs[string(packKey(buf[:0], scope, n, r.ID))]
		if !ok {
			continue
		}
		format, url, _ := configstore.ParseSubscriptionRef(x.targets.value(t))
		out = append(out, Subscription{
			Tenant: r.Tenant, ResourceType: NormalizeType(r.Type), ResourceID: r.ID, Notification: x.names.values[n],
			WebhookURL: url, Format: format,
		})
	}
	slices.SortFunc(out, func(a, b Subscription) int { return strings.Compare(a.Notification, b.Notification) })
	return out
}

// interner numbers strings; numbers are never reused, which suits sets
// that stay small (tenants, resource types, notification names).
type interner struct {
	ids    map[string]uint32
	values []string
}

func (in *interner) intern(s string) uint32 {
	if id, ok := in.ids[s]; ok {
		return id
	}
	if in.ids == nil {
		in.ids = map[string]uint32{}
	}
	id := uint32(len(in.values))
	in.ids[s] = id
	in.values = append(in.values, s)
	return id
}

func (in *interner) lookup(s string) (uint32, bool) {
	id, ok := in.ids[s]
	return id, ok
}

// refcounted numbers strings and counts their users, so that a target no
// subscription uses any more is dropped and its number reused.
type refcounted struct {
	interner
	refs []uint32
	free []uint32
}

func (rc *refcounted) acquire(s string) uint32 {
	if id, ok := rc.ids[s]; ok {
		rc.refs[id]++
		return id
	}
	if rc.ids == nil {
		rc.ids = map[string]uint32{}
	}
	var id uint32
	if n := len(rc.free); n > 0 {
		id, rc.free = rc.free[n-1], rc.free[:n-1]
		rc.values[id], rc.refs[id] = s, 1
	} else {
		id = uint32(len(rc.values))
		rc.values, rc.refs = append(rc.values, s), append(rc.refs, 1)
	}
	rc.ids[s] = id
	return id
}

func (rc *refcounted) release(id uint32) {
	if rc.refs[id]--; rc.refs[id] == 0 {
		delete(rc.ids, rc.values[id])
		rc.values[id] = ""
		rc.free = append(rc.free, id)
	}
}

func (rc *refcounted) value(id uint32) string { return rc.values[id] }
