package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/judge"
	"github.com/heraldhq/herald/pkg/rules"
)

func (a *API) ruleKind() kind {
	return kind{name: configstore.KindRule, plural: "rules", prefix: "rul_", check: a.checkRule}
}

// ruleRoutes adds the rule tools and the event types rules are written
// against.
func (a *API) ruleRoutes(mux *router, read func(http.HandlerFunc) http.Handler) {
	mux.Handle("POST /v1/rules:validate", read(a.validateRule))
	mux.Handle("POST /v1/rules:test", read(a.testRule))
	mux.Handle("GET /v1/event-types", read(a.listEventTypes))
	mux.Handle("GET /v1/event-types/{type}/fields", read(a.eventTypeFields))
}

// checkRule decodes a rule and checks it as the evaluator will run it.
// id is empty for a new rule, which must fit in the tenant's limit.
func (a *API) checkRule(r *http.Request, w http.ResponseWriter, tenant, id string) (any, error) {
	var spec configstore.Rule
	if err := httpapi.DecodeJSON(w, r, &spec); err != nil {
		return nil, err
	}
	if id == "" {
		if n := len(a.base.Config.List(tenant, configstore.KindRule)); n >= a.rules.Limits().MaxRulesPerTenant {
			return nil, httpapi.NewProblem(http.StatusUnprocessableEntity,
				fmt.Sprintf("the tenant has %d rules, the most it may have", n))
		}
	}
	if _, err := a.compileRule(r.Context(), tenant, id, spec, ""); err != nil {
		return nil, err
	}
	return spec, nil
}

// compileRule checks spec's fields and compiles its expressions against
// the schemas of the entity types it watches. Problems name fields after
// prefix.
func (a *API) compileRule(ctx context.Context, tenant, id string, spec configstore.Rule, prefix string) (*rules.Rule, error) {
	bad := func(field, msg string) error { return badRequest(prefix+field, msg) }
	switch {
	case spec.Name == "":
		return nil, bad("name", "required")
	case spec.Notification.Name == "":
		return nil, bad("notification.name", "required")
	case spec.Notification.State == "":
		return nil, bad("notification.state", "required")
	}
	switch spec.Ordering {
	case "", configstore.Keyed, configstore.Unordered:
	default:
		return nil, bad("ordering", `must be "keyed" or "unordered"`)
	}
	for i, d := range spec.Destinations {
		if _, ok := a.base.Config.Get(tenant, configstore.KindDestination, d); !ok {
			return nil, bad(fmt.Sprintf("destinations[%d]", i), fmt.Sprintf("no destination %q", d))
		}
	}
	var err error
	// A rule may name a field that only a just-registered version has:
	// on an unknown field, look at the registry once more, uncached.
	for _, fresh := range []bool{false, true} {
		var entities map[string]rules.Entity
		entities, err = a.base.Entities(ctx, spec.On.EntityTypes, fresh)
		if errors.Is(err, havro.ErrSubjectNotFound) {
			return nil, bad("on.entityTypes", err.Error()+": no schema is registered for it")
		}
		if err != nil {
			return nil, err
		}
		var r *rules.Rule
		if r, err = a.rules.Compile(tenant, id, spec, entities); err == nil {
			return r, nil
		}
		var ce *rules.CompileError
		if !errors.As(err, &ce) || !strings.Contains(ce.Message, "undefined field") {
			break
		}
	}
	var ce *rules.CompileError
	var se *rules.SpecError
	switch {
	case errors.As(err, &ce):
		return nil, bad(ce.Field, fmt.Sprintf("%s (checked against %s)", ce.Message, ce.Entity))
	case errors.As(err, &se):
		return nil, bad(se.Field, se.Message)
	}
	return nil, err
}

func (a *API) validateRule(w http.ResponseWriter, r *http.Request) {
	var spec configstore.Rule
	if err := httpapi.DecodeJSON(w, r, &spec); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if _, err := a.compileRule(r.Context(), httpapi.PrincipalFrom(r.Context()).Tenant, "", spec, ""); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]bool{"valid": true})
}

type testRequest struct {
	Rule   *configstore.Rule `json:"rule"`
	RuleID string            `json:"ruleId"`
	Event  event.Event       `json:"event"`
}

// testRule runs a rule, given or stored, against a sample event exactly as
// the evaluator would: the event is encoded with its entity type's schema
// and decoded back, so the rule sees the values it would see in Kafka.
func (a *API) testRule(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	tenant := httpapi.PrincipalFrom(ctx).Tenant
	var req testRequest
	if err := httpapi.DecodeJSON(w, r, &req); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	ruleID := "test"
	var spec configstore.Rule
	switch {
	case req.Rule != nil && req.RuleID != "":
		httpapi.WriteError(w, r, a.base.Log, badRequest("ruleId", "give either rule or ruleId, not both"))
		return
	case req.Rule != nil:
		spec = *req.Rule
	case req.RuleID != "":
		doc, ok := a.base.Config.Get(tenant, configstore.KindRule, req.RuleID)
		if !ok {
			httpapi.WriteError(w, r, a.base.Log, badRequest("ruleId", fmt.Sprintf("no rule %q", req.RuleID)))
			return
		}
		ruleID, spec = doc.ID, configstore.Spec[configstore.Rule](doc)
	default:
		httpapi.WriteError(w, r, a.base.Log, badRequest("rule", "give a rule or a ruleId"))
		return
	}
	compiled, err := a.compileRule(ctx, tenant, ruleID, spec, "rule.")
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	_, value, err := event.Encode(ctx, a.base.Registry, a.base.Topics.Events, tenant, &req.Event, "event.")
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	// The evaluator's own judge, given this one rule.
	j := judge.Judge{
		Registry:            a.base.Registry,
		NotificationSubject: a.base.NotificationSubject(),
		Rules: func(_, entityType, operation string) rules.Watching {
			// As rules.Index matches it: a timed rule also meets the
			// DELETEs that cancel its timers.
			deletes := compiled.Timed() && operation == "DELETE" && slices.Contains(compiled.Spec.On.EntityTypes, entityType)
			if compiled.Watches(entityType, operation) || deletes {
				return rules.Watch(entityType, compiled)
			}
			return rules.Watching{}
		},
		TenantZone: a.tenantZone,
	}
	v, err := j.Event(ctx, value)
	var re *judge.RecordError
	switch {
	case errors.As(err, &re):
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusUnprocessableEntity,
			"the rule evaluator would dead-letter this event: "+re.Reason, httpapi.FieldError{Field: "event", Message: re.Error()}))
		return
	case err != nil:
		a.base.Log.Warn("rules:test could not judge its sample", "tenant", tenant, "err", err)
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusServiceUnavailable, "the schema registry could not be reached; retry"))
		return
	}
	out := map[string]any{"fired": len(v.Notifications) > 0, "watched": compiled.Watches(v.Event.EntityType, v.Event.Operation)}
	if len(v.Failures) > 0 {
		// What the evaluator would dead-letter the event with.
		out["error"] = fmt.Sprintf("%s: %v", v.Failures[0].Reason, v.Failures[0].Err)
	}
	if len(v.Notifications) > 0 {
		n := v.Notifications[0].Notification
		body, err := n.JSON()
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		out["notification"] = jsonRaw(body)
		out["orderingKey"] = n.OrderingKey
	}
	if compiled.Timed() {
		out["timers"] = timers(v.Timers)
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// timers shows what an event does to timers, as rules:test answers it:
// each timer's rule, entity and due time, or that it is cancelled; a timer
// moved by another entity's event is marked so.
func timers(ops []judge.TimerOp) []map[string]any {
	out := make([]map[string]any, len(ops))
	for i, op := range ops {
		t := map[string]any{"rule": op.RuleID, "entityType": op.EntityType, "entity": op.EntityID}
		if op.Due.IsZero() {
			t["cancel"] = true
		} else {
			t["due"] = op.Due.UTC().Format(time.RFC3339Nano)
		}
		if op.Move {
			t["move"] = true
		}
		out[i] = t
	}
	return out
}

// tenantZone returns a tenant's time zone; "" for UTC.
func (a *API) tenantZone(tenant string) string {
	doc, ok := a.base.Config.Get(configstore.OperatorTenant, configstore.KindTenant, tenant)
	if !ok {
		return ""
	}
	return configstore.Spec[configstore.Tenant](doc).TimeZone
}

func (a *API) listEventTypes(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	names, err := a.base.EntityTypes(r.Context())
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	names, next := paginate(names, func(_ int, n string) string { return n }, p)
	items := make([]map[string]string, len(names))
	for i, n := range names {
		items[i] = map[string]string{"entityType": n, "subject": a.base.EventSubject(n)}
	}
	writePage(w, r, items, next)
}

// eventTypeFields lists an entity type's fields over every registered
// version, read from the registry at each call so a new version's fields
// show at once.
func (a *API) eventTypeFields(w http.ResponseWriter, r *http.Request) {
	e, err := a.base.Entity(r.Context(), r.PathValue("type"), true)
	if errors.Is(err, havro.ErrSubjectNotFound) {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no schema is registered for this entity type"))
		return
	}
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, e)
}
