package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/rules"
)

func badRequest(field, msg string) error {
	return httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: field, Message: msg})
}

func destinationKind() kind {
	return kind{name: configstore.KindDestination, plural: "destinations", prefix: "dst_", check: checkDestination}
}

func checkDestination(r *http.Request, w http.ResponseWriter, _ string) (any, error) {
	var d configstore.Destination
	if err := httpapi.DecodeJSON(w, r, &d); err != nil {
		return nil, err
	}
	if d.Name == "" {
		return nil, badRequest("name", "required")
	}
	switch d.Type {
	case "webhook":
		if d.Webhook == nil {
			return nil, badRequest("webhook", "required for a webhook destination")
		}
		u, err := url.Parse(d.Webhook.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, badRequest("webhook.url", "must be an absolute http or https URL")
		}
	default:
		return nil, badRequest("type", `must be "webhook"`)
	}
	return d, nil
}

func (a *API) ruleKind() kind {
	return kind{name: configstore.KindRule, plural: "rules", prefix: "rul_", check: a.checkRule}
}

// checkRule compiles the rule's expressions and checks its destinations
// belong to the tenant.
func (a *API) checkRule(r *http.Request, w http.ResponseWriter, tenant string) (any, error) {
	var spec configstore.Rule
	if err := httpapi.DecodeJSON(w, r, &spec); err != nil {
		return nil, err
	}
	if spec.Name == "" {
		return nil, badRequest("name", "required")
	}
	if spec.Notification.Name == "" {
		return nil, badRequest("notification.name", "required")
	}
	if spec.Notification.State == "" {
		return nil, badRequest("notification.state", "required")
	}
	switch spec.Ordering {
	case "", configstore.Keyed, configstore.Unordered:
	default:
		return nil, badRequest("ordering", `must be "keyed" or "unordered"`)
	}
	for i, id := range spec.Destinations {
		if _, ok := a.base.Config.Get(tenant, configstore.KindDestination, id); !ok {
			return nil, badRequest(fmt.Sprintf("destinations[%d]", i), fmt.Sprintf("no destination %q", id))
		}
	}
	if _, err := a.rules.Compile(tenant, "", spec); err != nil {
		var ce *rules.CompileError
		if errors.As(err, &ce) {
			return nil, badRequest(ce.Field, ce.Message)
		}
		return nil, badRequest("on", err.Error())
	}
	return spec, nil
}
