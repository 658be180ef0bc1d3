package configstore

import "strings"

// KindSubscriptionSettings is the one document per tenant that says how
// its per-resource subscriptions are delivered: the signing secrets every
// subscription webhook is signed with. Its document is sealed.
const KindSubscriptionSettings = "subscription-settings"

// SubscriptionSettingsID is the id of a tenant's KindSubscriptionSettings
// document.
const SubscriptionSettingsID = "default"

// SubscriptionSettings holds what a tenant's subscription webhooks share.
// One secret per tenant, not per subscription: a receiver that registered
// the same URL for ten million SIMs checks every request with one key.
type SubscriptionSettings struct {
	// Secrets sign each request (Standard Webhooks), as a webhook
	// destination's do: the newest is current, a rotated one stays live
	// until it expires.
	Secrets []SigningSecret `json:"secrets"`
}

// subscriptionRefPrefix starts a notification destination that is a
// per-resource subscription's webhook rather than a destination document.
const subscriptionRefPrefix = "sub:"

// SubscriptionRef is the destination a notification names for a
// subscription: its payload format and URL. The URL travels in the
// notification, so a sender needs no index of the subscriptions to
// deliver, and every subscription to one URL shares the sender's
// per-destination limits and health.
func SubscriptionRef(format, url string) string {
	if format == "" {
		format = FormatNative
	}
	return subscriptionRefPrefix + format + ":" + url
}

// ParseSubscriptionRef reads what SubscriptionRef wrote.
func ParseSubscriptionRef(ref string) (format, url string, ok bool) {
	rest, ok := strings.CutPrefix(ref, subscriptionRefPrefix)
	if !ok {
		return "", "", false
	}
	format, url, ok = strings.Cut(rest, ":")
	return format, url, ok && url != ""
}

// Destination returns the destination a notification names, and the
// version of the configuration it comes from: a destination document, or
// for a subscription reference a webhook destination to its URL, signed
// with the tenant's subscription secrets.
func (s *Store) Destination(tenant, id string) (Destination, int64, bool) {
	format, url, isRef := ParseSubscriptionRef(id)
	if !isRef {
		doc, ok := s.Get(tenant, KindDestination, id)
		if !ok {
			return Destination{}, 0, false
		}
		return Spec[Destination](doc), doc.Version, true
	}
	doc, ok := s.Get(tenant, KindSubscriptionSettings, SubscriptionSettingsID)
	if !ok {
		return Destination{}, 0, false
	}
	return Destination{
		Type: "webhook", Name: "subscription",
		Webhook: &WebhookDestination{URL: url, Format: format, Secrets: Spec[SubscriptionSettings](doc).Secrets},
	}, doc.Version, true
}
