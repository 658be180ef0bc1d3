package adminapi

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/webhook"
)

func (a *API) destinationKind() kind {
	return kind{name: configstore.KindDestination, plural: "destinations", prefix: "dst_", check: a.checkDestination}
}

// reservedHeaders are set by the sender; a destination may not set them.
var reservedHeaders = []string{"content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection", "webhook-"}

// checkDestination validates a destination: webhook, email or
// eventbridge. Signing secrets and the disabled state are Herald's: a new
// webhook destination gets a fresh secret, and a replaced one keeps its
// stored secrets and state. An email destination has no secret. An
// EventBridge destination's external id is the tenant's: a replace that
// leaves it out keeps the stored one while the role stays the same.
func (a *API) checkDestination(r *http.Request, w http.ResponseWriter, tenant, id string) (any, error) {
	var d configstore.Destination
	if err := httpapi.DecodeJSON(w, r, &d); err != nil {
		return nil, err
	}
	if d.Name == "" {
		return nil, badRequest("name", "required")
	}
	if d.Disabled != nil {
		return nil, badRequest("disabled", "set by Herald; enable with POST /v1/destinations/{id}:enable")
	}
	if len(d.RetrySchedule) > 0 {
		if _, err := delivery.ParseScheduleList(d.RetrySchedule); err != nil {
			return nil, badRequest("retrySchedule", err.Error())
		}
	}
	if d.Concurrency < 0 || d.Concurrency > 1000 {
		return nil, badRequest("concurrency", "must be between 0 (the default) and 1000")
	}
	if d.RatePerSecond < 0 {
		return nil, badRequest("ratePerSecond", "must not be negative")
	}
	if err := checkChannel(d); err != nil {
		return nil, err
	}
	switch d.Type {
	case "webhook":
		if err := a.checkWebhook(r, d.Webhook); err != nil {
			return nil, err
		}
	case "email":
		if err := a.checkEmail(tenant, d.Email); err != nil {
			return nil, err
		}
	}
	if id != "" {
		if doc, ok := a.base.Config.Get(tenant, configstore.KindDestination, id); ok {
			stored := configstore.Spec[configstore.Destination](doc)
			d.Disabled = stored.Disabled
			if stored.Webhook != nil && d.Webhook != nil {
				d.Webhook.Secrets = stored.Webhook.Secrets
			}
			if eb, old := d.EventBridge, stored.EventBridge; eb != nil && old != nil &&
				eb.ExternalID == "" && eb.RoleARN != "" && eb.RoleARN == old.RoleARN {
				eb.ExternalID = old.ExternalID
			}
		}
	}
	if d.EventBridge != nil {
		if err := checkEventBridge(d.EventBridge); err != nil {
			return nil, err
		}
	}
	// A webhook destination always has a secret, also one that was of
	// another type before this replace.
	if d.Webhook != nil && len(d.Webhook.Secrets) == 0 {
		secret, err := webhook.NewSecret()
		if err != nil {
			return nil, err
		}
		d.Webhook.Secrets = []configstore.SigningSecret{{Secret: secret, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}}
	}
	return d, nil
}

// checkChannel checks that type names a channel and that the destination
// gives that channel's object and no other.
func checkChannel(d configstore.Destination) error {
	given := map[string]bool{"webhook": d.Webhook != nil, "email": d.Email != nil, "eventbridge": d.EventBridge != nil}
	if _, ok := given[d.Type]; !ok {
		return badRequest("type", `must be "webhook", "email" or "eventbridge"`)
	}
	for _, channel := range []string{"webhook", "email", "eventbridge"} {
		switch {
		case channel == d.Type && !given[channel]:
			return badRequest(channel, `required with "type": "`+channel+`"`)
		case channel != d.Type && given[channel]:
			return badRequest(channel, `only with "type": "`+channel+`"`)
		}
	}
	return nil
}

func (a *API) checkWebhook(r *http.Request, wh *configstore.WebhookDestination) error {
	if len(wh.Secrets) > 0 {
		return badRequest("webhook.secrets", "set by Herald; rotate with POST /v1/destinations/{id}:rotate-secret")
	}
	if err := a.policy.CheckURL(r.Context(), net.DefaultResolver, wh.URL); err != nil {
		return badRequest("webhook.url", err.Error())
	}
	for name, v := range wh.Headers {
		lower := strings.ToLower(name)
		for _, res := range reservedHeaders {
			if lower == res || strings.HasSuffix(res, "-") && strings.HasPrefix(lower, res) {
				return badRequest("webhook.headers."+name, "set by Herald")
			}
		}
		if !validHeaderName(name) || strings.ContainsAny(v, "\r\n\x00") {
			return badRequest("webhook.headers."+name, "not a valid HTTP header")
		}
	}
	for i, p := range wh.Parameters {
		if p.Name == "" {
			return badRequest(fmt.Sprintf("webhook.parameters[%d].name", i), "required")
		}
		if _, err := notification.ParseTemplate(p.Name, p.Value); err != nil {
			return badRequest(fmt.Sprintf("webhook.parameters[%d].value", i), err.Error())
		}
	}
	var body, ct string
	if wh.Template != nil {
		body, ct = wh.Template.Body, wh.Template.ContentType
		if wh.Format != configstore.FormatTemplate {
			return badRequest("webhook.template", `only with "format": "template"`)
		}
	}
	if _, err := notification.NewFormat(wh.Format, body, ct); err != nil {
		field := "webhook.format"
		if wh.Format == configstore.FormatTemplate {
			field = "webhook.template"
		}
		return badRequest(field, err.Error())
	}
	return nil
}

// EventBridge destination defaults.
const (
	defaultEventSource = "herald.notifications"
	defaultEventFormat = notification.FormatTotogi
)

// partitionRegions gives each AWS partition's region names, as the AWS
// SDKs' partition data describes them.
var partitionRegions = map[string]*regexp.Regexp{
	"aws":        regexp.MustCompile(`^(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-[0-9]+$`),
	"aws-cn":     regexp.MustCompile(`^cn-[a-z]+-[0-9]+$`),
	"aws-us-gov": regexp.MustCompile(`^us-gov-[a-z]+-[0-9]+$`),
	"aws-iso":    regexp.MustCompile(`^us-iso-[a-z]+-[0-9]+$`),
	"aws-iso-b":  regexp.MustCompile(`^us-isob-[a-z]+-[0-9]+$`),
	"aws-iso-e":  regexp.MustCompile(`^eu-isoe-[a-z]+-[0-9]+$`),
	"aws-iso-f":  regexp.MustCompile(`^us-isof-[a-z]+-[0-9]+$`),
	"aws-eusc":   regexp.MustCompile(`^eusc-de-[a-z]+-[0-9]+$`),
}

var (
	// eventBusARN is arn:<partition>:events:<region>:<account>:event-bus/<name>.
	eventBusARN = regexp.MustCompile(`^arn:([a-z-]+):events:([a-z0-9-]+):([0-9]{12}):event-bus/([A-Za-z0-9/._-]{1,256})$`)
	// roleARN is arn:<partition>:iam::<account>:role/<path/name>.
	roleARN = regexp.MustCompile(`^arn:([a-z-]+):iam::([0-9]{12}):role/((?:[\x21-\x7e]{1,510}/)?[A-Za-z0-9+=,.@_-]{1,64})$`)
	// externalID is what STS takes as an external id.
	externalID = regexp.MustCompile(`^[A-Za-z0-9+=,.@:/_-]+$`)
)

// checkEventBridge checks an EventBridge destination and fills its
// defaults: the bus ARN names a bus in a real region of its partition;
// the source follows EventBridge's rules for a source (1 to 256
// characters, not starting with "aws."); the detail-type, when given, is
// at most 128 characters; the format is totogi or native; a role ARN is a
// role of the bus's partition, and an external id comes only with one.
func checkEventBridge(eb *configstore.EventBridgeDestination) error {
	m := eventBusARN.FindStringSubmatch(eb.EventBusARN)
	if m == nil {
		return badRequest("eventbridge.eventBusArn", "an event bus ARN: arn:<partition>:events:<region>:<12-digit account>:event-bus/<name>")
	}
	partition, region := m[1], m[2]
	regions, ok := partitionRegions[partition]
	if !ok {
		return badRequest("eventbridge.eventBusArn", "unknown AWS partition "+strconv.Quote(partition))
	}
	if !regions.MatchString(region) {
		return badRequest("eventbridge.eventBusArn", strconv.Quote(region)+" is not a region of partition "+partition)
	}
	if eb.Source == "" {
		eb.Source = defaultEventSource
	}
	if err := checkEventSource(eb.Source); err != nil {
		return badRequest("eventbridge.source", err.Error())
	}
	if n := utf8.RuneCountInString(eb.DetailType); n > 128 || strings.IndexFunc(eb.DetailType, unicode.IsControl) >= 0 {
		return badRequest("eventbridge.detailType", "at most 128 characters, without control characters; empty means the notification's name")
	}
	if eb.Format == "" {
		eb.Format = defaultEventFormat
	}
	if eb.Format != notification.FormatTotogi && eb.Format != notification.FormatNative {
		return badRequest("eventbridge.format", `must be "totogi" or "native"`)
	}
	if eb.RoleARN != "" {
		r := roleARN.FindStringSubmatch(eb.RoleARN)
		if r == nil || len(eb.RoleARN) > 2048 {
			return badRequest("eventbridge.roleArn", "an IAM role ARN: arn:<partition>:iam::<12-digit account>:role/<path/name>")
		}
		if r[1] != partition {
			return badRequest("eventbridge.roleArn", "the role must be in the bus's partition, "+partition)
		}
	}
	switch {
	case eb.ExternalID != "" && eb.RoleARN == "":
		return badRequest("eventbridge.externalId", "only with a roleArn")
	case eb.ExternalID != "" && (len(eb.ExternalID) < 2 || len(eb.ExternalID) > 1224 || !externalID.MatchString(eb.ExternalID)):
		return badRequest("eventbridge.externalId", "2 to 1224 characters: letters, digits and +=,.@:/_-")
	}
	return nil
}

// checkEventSource applies EventBridge's rules for an event's source.
func checkEventSource(s string) error {
	switch {
	case utf8.RuneCountInString(s) > 256:
		return errors.New("at most 256 characters")
	case !strings.ContainsRune("/._-", rune(s[0])) && !isASCIIAlnum(s[0]):
		return errors.New("must start with a letter, a digit or one of / . _ -")
	case strings.HasPrefix(s, "aws."):
		return errors.New(`the "aws." prefix is reserved for AWS services`)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("must not hold control characters")
	}
	return nil
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// contactTypeRule says what names a contact type, as the contact routes
// take it.
const contactTypeRule = "billing, service, technical, or a type of your own: a lower-case letter, then up to 31 lower-case letters, digits and dashes"

// checkEmail checks an email destination: its fixed addresses are bare
// addresses, its contact types are names, it has at least one recipient,
// and the tenant has the template it renders and an SMTP profile to send
// it through.
func (a *API) checkEmail(tenant string, e *configstore.EmailDestination) error {
	const address = "an email address such as ops@example.com, without a display name"
	lists := []struct {
		field string
		items []string
		valid func(string) bool
		rule  string
	}{
		{"email.to", e.To, validAddress, address},
		{"email.cc", e.Cc, validAddress, address},
		{"email.bcc", e.Bcc, validAddress, address},
		{"email.toContactTypes", e.ToContactTypes, validContactType, contactTypeRule},
		{"email.ccContactTypes", e.CcContactTypes, validContactType, contactTypeRule},
		{"email.bccContactTypes", e.BccContactTypes, validContactType, contactTypeRule},
	}
	recipients := 0
	for _, l := range lists {
		for i, v := range l.items {
			if !l.valid(v) {
				return badRequest(fmt.Sprintf("%s[%d]", l.field, i), l.rule)
			}
		}
		recipients += len(l.items)
	}
	if recipients == 0 {
		return badRequest("email", "needs a recipient: an address in to, cc or bcc, or a contact type in toContactTypes, ccContactTypes or bccContactTypes")
	}
	if e.TemplateID == "" {
		return badRequest("email.templateId", "required")
	}
	tpl, ok := a.base.Config.Get(tenant, configstore.KindEmailTemplate, e.TemplateID)
	if !ok {
		return badRequest("email.templateId", "no email template with this id")
	}
	if e.SMTPProfileID != "" {
		if _, ok := a.base.Config.Get(tenant, configstore.KindSMTPProfile, e.SMTPProfileID); !ok {
			return badRequest("email.smtpProfileId", "no SMTP profile with this id")
		}
		return nil
	}
	if configstore.Spec[configstore.EmailTemplate](tpl).SMTPProfileID == "" {
		if _, ok := a.base.Config.DefaultSMTPProfile(tenant); !ok {
			return badRequest("email.smtpProfileId", "neither the destination nor its template names an SMTP profile, and the tenant has no default one: create a profile first")
		}
	}
	return nil
}

// inUse returns a 409 problem naming what still uses tenant's document
// of kind with id, so that deleting it would leave them naming nothing;
// nil when nothing does. Email templates are used by the email
// destinations that render them; SMTP profiles by the templates that
// name them and by the email destinations that send through them,
// directly, through their template, or as the tenant's default.
func (a *API) inUse(tenant, kind, id string) error {
	var what string
	var users []string
	switch kind {
	case configstore.KindEmailTemplate:
		what = "email template " + id
		for _, d := range a.base.Config.List(tenant, configstore.KindDestination) {
			if e := configstore.Spec[configstore.Destination](d).Email; e != nil && e.TemplateID == id {
				users = append(users, "destination "+d.ID)
			}
		}
	case configstore.KindSMTPProfile:
		what = "SMTP profile " + id
		for _, t := range a.base.Config.List(tenant, configstore.KindEmailTemplate) {
			if configstore.Spec[configstore.EmailTemplate](t).SMTPProfileID == id {
				users = append(users, "email template "+t.ID)
			}
		}
		for _, d := range a.base.Config.List(tenant, configstore.KindDestination) {
			if e := configstore.Spec[configstore.Destination](d).Email; e != nil {
				if profile, how := a.sendsThrough(tenant, e); profile == id {
					users = append(users, "destination "+d.ID+how)
				}
			}
		}
	}
	if len(users) == 0 {
		return nil
	}
	return httpapi.NewProblem(http.StatusConflict, fmt.Sprintf("%s is in use by %s; change or delete them first", what, strings.Join(users, ", ")))
}

// sendsThrough returns the id of the SMTP profile an email destination
// sends through, and how it comes to that profile when not by naming it.
func (a *API) sendsThrough(tenant string, e *configstore.EmailDestination) (id, how string) {
	if e.SMTPProfileID != "" {
		return e.SMTPProfileID, ""
	}
	if tpl, ok := a.base.Config.Get(tenant, configstore.KindEmailTemplate, e.TemplateID); ok {
		if p := configstore.Spec[configstore.EmailTemplate](tpl).SMTPProfileID; p != "" {
			return p, " (through email template " + tpl.ID + ")"
		}
	}
	if def, ok := a.base.Config.DefaultSMTPProfile(tenant); ok {
		return def.ID, " (as the tenant's default)"
	}
	return "", ""
}

// validHeaderName reports whether s is an HTTP token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c >= 0x7f || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// hideSecrets removes secrets from a destination as the API shows it:
// of a webhook's signing secrets what remains says how many are live and
// when they expire; of an EventBridge external id, whether there is one.
func hideSecrets(doc configstore.Document, res map[string]any) {
	if doc.Kind != configstore.KindDestination {
		return
	}
	if eb, _ := res["eventbridge"].(map[string]any); eb != nil {
		_, set := eb["externalId"]
		delete(eb, "externalId")
		eb["externalIdSet"] = set
	}
	wh, _ := res["webhook"].(map[string]any)
	if wh == nil {
		return
	}
	delete(wh, "secrets")
	d := configstore.Spec[configstore.Destination](doc)
	if d.Webhook == nil {
		return
	}
	var live []map[string]any
	for _, s := range d.Webhook.Secrets {
		if s.ExpiresAt != nil && !time.Now().Before(*s.ExpiresAt) {
			continue
		}
		m := map[string]any{"createdAt": s.CreatedAt}
		if s.ExpiresAt != nil {
			m["expiresAt"] = *s.ExpiresAt
		}
		live = append(live, m)
	}
	wh["signingSecrets"] = live
}

// revealSecret adds the current signing secret to a destination just
// created: the one answer, with GET /v1/destinations/{id}/secret, that
// shows it.
func revealSecret(doc configstore.Document, res map[string]any) {
	if doc.Kind != configstore.KindDestination {
		return
	}
	if d := configstore.Spec[configstore.Destination](doc); d.Webhook != nil && len(d.Webhook.Secrets) > 0 {
		res["secret"] = d.Webhook.Secrets[len(d.Webhook.Secrets)-1].Secret
	}
}

// destinationAction serves POST /v1/destinations/{id}:rotate-secret and
// POST /v1/destinations/{id}:enable.
func (a *API) destinationAction(w http.ResponseWriter, r *http.Request) {
	id, action, _ := strings.Cut(r.PathValue("action"), ":")
	switch action {
	case "rotate-secret":
		a.rotateSecret(w, r, id)
	case "enable":
		a.enableDestination(w, r, id)
	default:
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no such action; use :rotate-secret or :enable"))
	}
}

// updateDestination applies change to the stored destination and stores
// it, retrying when someone else wrote in between.
func (a *API) updateDestination(r *http.Request, id string, change func(*configstore.Destination) error) (configstore.Document, error) {
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	for range 5 {
		doc, ok := a.base.Config.Get(tenant, configstore.KindDestination, id)
		if !ok {
			return doc, httpapi.NewProblem(http.StatusNotFound, "no destination with this id")
		}
		d := configstore.Spec[configstore.Destination](doc)
		if d.Webhook != nil {
			wh := *d.Webhook
			wh.Secrets = append([]configstore.SigningSecret(nil), wh.Secrets...)
			d.Webhook = &wh
		}
		if err := change(&d); err != nil {
			return doc, err
		}
		next, err := configstore.NewDocument(tenant, configstore.KindDestination, id, d)
		if err != nil {
			return doc, err
		}
		stored, err := a.base.Config.Put(r.Context(), next, doc.Version)
		if errors.Is(err, configstore.ErrVersionConflict) {
			continue
		}
		return stored, err
	}
	return configstore.Document{}, httpapi.NewProblem(http.StatusConflict, "the destination keeps changing; try again")
}

// rotateSecret makes a new current secret. The previous one stays live for
// the grace period given as {"expireAfter": "24h"} (default
// HERALD_WEBHOOK_SECRET_GRACE); older ones end now, so at most two are
// live.
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		ExpireAfter string `json:"expireAfter"`
	}
	if r.ContentLength != 0 {
		if err := httpapi.DecodeJSON(w, r, &body); err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
	}
	grace := a.secretGrace
	if body.ExpireAfter != "" {
		d, err := time.ParseDuration(body.ExpireAfter)
		if err != nil || d < 0 || d > 30*24*time.Hour {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, "the request is not valid",
				httpapi.FieldError{Field: "expireAfter", Message: "a Go duration between 0s and 720h"}))
			return
		}
		grace = d
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var expires time.Time
	doc, err := a.updateDestination(r, id, func(d *configstore.Destination) error {
		if d.Webhook == nil {
			return notWebhook()
		}
		d.Webhook.Secrets, expires = webhook.Rotate(d.Webhook.Secrets, secret, now, grace)
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	w.Header().Set("ETag", `"`+jsonNumber(doc.Version)+`"`)
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"secret": secret, "previousExpiresAt": expires})
}

func (a *API) enableDestination(w http.ResponseWriter, r *http.Request, id string) {
	doc, err := a.updateDestination(r, id, func(d *configstore.Destination) error {
		d.Disabled = nil
		return nil
	})
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	writeResource(w, r, a, http.StatusOK, doc)
}

// notWebhook is the answer of the signing secret routes for a destination
// of another type.
func notWebhook() *httpapi.Problem {
	return httpapi.NewProblem(http.StatusConflict, "only webhook destinations have signing secrets")
}

// getSecret serves GET /v1/destinations/{id}/secret: the current signing
// secret.
func (a *API) getSecret(w http.ResponseWriter, r *http.Request) {
	doc, ok := a.base.Config.Get(httpapi.PrincipalFrom(r.Context()).Tenant, configstore.KindDestination, r.PathValue("id"))
	if !ok {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no destination with this id"))
		return
	}
	d := configstore.Spec[configstore.Destination](doc)
	if d.Webhook == nil {
		httpapi.WriteProblem(w, notWebhook())
		return
	}
	if len(d.Webhook.Secrets) == 0 {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "this destination has no signing secret"))
		return
	}
	cur := d.Webhook.Secrets[len(d.Webhook.Secrets)-1]
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"secret": cur.Secret, "createdAt": cur.CreatedAt})
}
