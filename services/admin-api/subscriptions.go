package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/subscription"
	"github.com/heraldhq/herald/pkg/webhook"
)

// Per-resource subscriptions, as Truphone registers a webhook per SIM:
//
//	PUT    /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}  {"webhookUrl": "https://…"}
//	GET    /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}
//	DELETE /v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}
//	GET    /v1/resources/{resourceType}/{resourceId}/subscriptions
//
// They live in the subscriptions topic (pkg/subscription), not the config
// topic. Every subscription webhook of a tenant is signed with the
// tenant's subscription secret: made by the tenant's first PUT, whose
// answer shows it once, and rotated with
// POST /v1/subscription-settings:rotate-secret, which shows the new one
// once.

// subscriptionRoutes adds the subscription routes.
func (a *API) subscriptionRoutes(rt *router, read, write func(http.HandlerFunc) http.Handler) {
	const one = "/v1/resources/{resourceType}/{resourceId}/subscriptions/{notificationName}"
	rt.Handle("PUT "+one, write(a.putSubscription))
	rt.Handle("GET "+one, read(a.getSubscription))
	rt.Handle("DELETE "+one, write(a.deleteSubscription))
	rt.Handle("GET /v1/resources/{resourceType}/{resourceId}/subscriptions", read(a.listSubscriptions))
	rt.Handle("GET /v1/subscription-settings", read(a.getSubscriptionSettings))
	rt.Handle("POST /v1/subscription-settings:rotate-secret", write(a.rotateSubscriptionSecret))
}

// followSubscriptions follows the subscriptions topic until ctx ends.
func (a *API) followSubscriptions(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.subs.Run(ctx) })
	g.Go(func() error {
		if err := a.subs.WaitCaughtUp(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("catch up with subscriptions: %w", err)
		}
		return nil
	})
	return g.Wait()
}

// subscriptionPath reads and checks the resource and, when the route has
// one, the notification name of a path.
func (a *API) subscriptionPath(r *http.Request) (subscription.Resource, string, error) {
	res := subscription.Resource{Tenant: tenantOf(r), Type: r.PathValue("resourceType"), ID: r.PathValue("resourceId")}
	name := r.PathValue("notificationName")
	if !a.subs.CaughtUp() {
		return res, "", httpapi.NewProblem(http.StatusServiceUnavailable, "the subscriptions are still loading; retry")
	}
	bad := func(field, msg string) error {
		return httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: field, Message: msg})
	}
	switch {
	case !validToken(res.Type, 64, false):
		return res, "", bad("resourceType", "an entity type such as Sim or Account: a letter, then up to 63 letters, digits and underscores")
	case res.ID == "" || len(res.ID) > maxAccountID || strings.ContainsFunc(res.ID, isControl):
		return res, "", bad("resourceId", "1 to 256 characters, no control characters")
	case strings.HasSuffix(r.Pattern, "{notificationName}") && !validToken(name, 128, true):
		return res, "", bad("notificationName", "a notification name such as USAGE_THRESHOLD: up to 128 letters, digits, '_', '-' and '.'")
	}
	res.Type = subscription.NormalizeType(res.Type)
	return res, name, nil
}

// validToken reports whether s is a letter then letters, digits and '_'
// (and '-' and '.' when loose), at most max bytes.
func validToken(s string, max int, loose bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i, c := range s {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case letter:
		case i == 0 && !loose:
			return false
		case c >= '0' && c <= '9' || c == '_' || loose && (c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// subscriptionResource is a subscription as the API shows it.
func subscriptionResource(s subscription.Subscription) map[string]any {
	m := map[string]any{"resourceType": s.ResourceType, "resourceId": s.ResourceID, "notificationName": s.Notification,
		"webhookUrl": s.WebhookURL, "format": s.Format}
	if !s.UpdatedAt.IsZero() {
		m["updatedAt"] = s.UpdatedAt
	}
	return m
}

// putSubscription serves PUT …/subscriptions/{notificationName}: 201 for a
// new subscription, 200 when it replaced the resource's subscription to
// the name.
func (a *API) putSubscription(w http.ResponseWriter, r *http.Request) {
	res, name, err := a.subscriptionPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	var body struct {
		WebhookURL string `json:"webhookUrl"`
		Format     string `json:"format"`
	}
	if err := httpapi.DecodeJSON(w, r, &body); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	switch body.Format {
	case "":
		body.Format = configstore.FormatNative
	case configstore.FormatNative, configstore.FormatTotogi, configstore.FormatTruphone:
	default:
		httpapi.WriteError(w, r, a.base.Log, badRequest("format", `"native" (the default), "totogi" or "truphone"`))
		return
	}
	if body.WebhookURL == "" {
		httpapi.WriteError(w, r, a.base.Log, badRequest("webhookUrl", "required"))
		return
	}
	if err := a.policy.CheckURL(r.Context(), net.DefaultResolver, body.WebhookURL); err != nil {
		httpapi.WriteError(w, r, a.base.Log, badRequest("webhookUrl", err.Error()))
		return
	}
	secret, err := a.ensureSubscriptionSecret(r, res.Tenant)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(res.Tenant, "subscription", subscription.Key(res, name))()
	existed := len(a.subscriptionsOf(res, name)) > 0
	stored, err := a.subs.Put(r.Context(), subscription.Subscription{Tenant: res.Tenant, ResourceType: res.Type, ResourceID: res.ID,
		Notification: name, WebhookURL: body.WebhookURL, Format: body.Format})
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	out := subscriptionResource(stored)
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	if secret != "" {
		// The tenant's first subscription made its signing secret; this
		// is the one answer that shows it.
		out["secret"] = secret
	}
	httpapi.WriteJSON(w, status, out)
}

// subscriptionsOf returns the resource's subscription to name, or all of
// them when name is empty.
func (a *API) subscriptionsOf(res subscription.Resource, name string) []subscription.Subscription {
	var out []subscription.Subscription
	for _, s := range a.subs.List(res) {
		if name == "" || s.Notification == name {
			out = append(out, s)
		}
	}
	return out
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	res, name, err := a.subscriptionPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	subs := a.subscriptionsOf(res, name)
	if len(subs) == 0 {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "the resource has no subscription to this notification"))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, subscriptionResource(subs[0]))
}

func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	res, name, err := a.subscriptionPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	defer a.locks.lock(res.Tenant, "subscription", subscription.Key(res, name))()
	err = a.subs.Delete(r.Context(), res, name)
	if errors.Is(err, subscription.ErrNotFound) {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "the resource has no subscription to this notification"))
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listSubscriptions serves GET …/subscriptions: the resource's
// subscriptions by notification name (a handful, so one page).
func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	res, _, err := a.subscriptionPath(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	subs, next := paginate(a.subscriptionsOf(res, ""), func(_ int, s subscription.Subscription) string { return s.Notification }, p)
	items := make([]map[string]any, 0, len(subs))
	for _, s := range subs {
		items = append(items, subscriptionResource(s))
	}
	writePage(w, r, items, next)
}

// ensureSubscriptionSecret makes the tenant's subscription settings with a
// fresh signing secret when it has none, and returns that secret; "" when
// the tenant already had one.
func (a *API) ensureSubscriptionSecret(r *http.Request, tenant string) (string, error) {
	defer a.locks.lock(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID)()
	if _, ok := a.base.Config.Get(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID); ok {
		return "", nil
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		return "", err
	}
	settings := configstore.SubscriptionSettings{Secrets: []configstore.SigningSecret{{Secret: secret, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}}}
	doc, err := configstore.NewDocument(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID, settings)
	if err == nil {
		_, err = a.base.Config.Put(r.Context(), doc, configstore.Absent)
	}
	if errors.Is(err, configstore.ErrVersionConflict) {
		return "", nil // another replica made the settings first
	}
	return secret, err
}

// getSubscriptionSettings serves GET /v1/subscription-settings: when each
// live signing secret was made and expires, never the secrets.
func (a *API) getSubscriptionSettings(w http.ResponseWriter, r *http.Request) {
	doc, ok := a.base.Config.Get(tenantOf(r), configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID)
	if !ok {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no subscription yet: the first PUT of a subscription makes the settings"))
		return
	}
	live := []map[string]any{}
	now := time.Now()
	for _, s := range configstore.Spec[configstore.SubscriptionSettings](doc).Secrets {
		if s.ExpiresAt != nil && !now.Before(*s.ExpiresAt) {
			continue
		}
		m := map[string]any{"createdAt": s.CreatedAt}
		if s.ExpiresAt != nil {
			m["expiresAt"] = *s.ExpiresAt
		}
		live = append(live, m)
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"signingSecrets": live, "version": doc.Version, "updatedAt": doc.UpdatedAt})
}

// rotateSubscriptionSecret serves POST
// /v1/subscription-settings:rotate-secret: a new current secret, shown in
// this answer only; the previous one signs too until
// HERALD_WEBHOOK_SECRET_GRACE has passed, older ones end now.
func (a *API) rotateSubscriptionSecret(w http.ResponseWriter, r *http.Request) {
	tenant := tenantOf(r)
	defer a.locks.lock(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID)()
	cur, ok := a.base.Config.Get(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID)
	if !ok {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no subscription yet: the first PUT of a subscription makes the secret"))
		return
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	settings := configstore.Spec[configstore.SubscriptionSettings](cur)
	var expires time.Time
	settings.Secrets, expires = webhook.Rotate(settings.Secrets, secret, time.Now().UTC().Truncate(time.Millisecond), a.secretGrace)
	doc, err := configstore.NewDocument(tenant, configstore.KindSubscriptionSettings, configstore.SubscriptionSettingsID, settings)
	if err == nil {
		doc, err = a.base.Config.Put(r.Context(), doc, cur.Version)
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"secret": secret, "previousExpiresAt": expires})
}
