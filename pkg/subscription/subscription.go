// Package subscription keeps per-resource subscriptions, as Truphone
// registers a webhook per SIM: for one resource (an entity type and id,
// such as a SIM's ICCID) and one notification name, the URL that gets the
// notification.
//
// A tenant may hold ten million of them, so they do not live in the
// config topic, which every service replays into memory as generic
// documents. Each subscription is one record in a compacted topic of its
// own, keyed "{tenant}/{resourceType}/{resourceId}/{notificationName}"
// with a small JSON value; a second write of a key replaces the first and
// a tombstone deletes it. A Store follows that topic into an Index that
// holds each subscription in a few dozen bytes: tenants, resource types,
// notification names and targets (format and URL, usually shared by many
// resources) are interned, and a subscription is one map entry from a
// packed binary key to a target number. Only the services that need it
// (the rule evaluator, to match; the admin API, to serve) run a Store;
// the evaluator writes the target into the notification as a destination
// reference (configstore.SubscriptionRef), so the webhook sender delivers
// it with the same signing and address rules as any webhook and needs no
// index.
package subscription

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
)

// ErrNotFound is returned for a subscription that does not exist.
var ErrNotFound = errors.New("no such subscription")

// SimResourceType is the resource type of SIMs, whose subscriptions also
// match events that name the SIM as their deviceId.
const SimResourceType = "sim"

// Subscription sends one notification name about one resource to a URL.
type Subscription struct {
	Tenant       string `json:"-"`
	ResourceType string `json:"-"` // lower case
	ResourceID   string `json:"-"`
	Notification string `json:"-"`
	WebhookURL   string `json:"webhookUrl"`
	// Format is the payload format: native (default), totogi or truphone.
	Format    string    `json:"format,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Resource names one resource of a tenant.
type Resource struct {
	Tenant, Type, ID string
}

// NormalizeType returns the form resource types are stored and matched
// in: an entity type, case folded ("Sim", "SIM" and "sim" are one).
func NormalizeType(t string) string { return strings.ToLower(t) }

// Key returns the subscription's record key.
func (s Subscription) Key() string {
	return Key(Resource{s.Tenant, s.ResourceType, s.ResourceID}, s.Notification)
}

// Key builds the record key of a resource's subscription to a
// notification name. Tenant, resource type and name hold no "/", so the
// resource id, which may, is what lies between them.
func Key(r Resource, name string) string {
	return r.Tenant + "/" + NormalizeType(r.Type) + "/" + r.ID + "/" + name
}

// parseKey is Key's inverse.
func parseKey(key string) (Resource, string, error) {
	tenant, rest, ok1 := strings.Cut(key, "/")
	typ, rest, ok2 := strings.Cut(rest, "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok1 || !ok2 || i <= 0 || i == len(rest)-1 || tenant == "" || typ == "" {
		return Resource{}, "", fmt.Errorf("subscription key %q is not tenant/resourceType/resourceId/notificationName", key)
	}
	return Resource{tenant, typ, rest[:i]}, rest[i+1:], nil
}

// Ref returns the destination reference a notification carries for the
// subscription.
func (s Subscription) Ref() string { return configstore.SubscriptionRef(s.Format, s.WebhookURL) }
