package adminapi

import (
	"net/http"
	"net/url"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

func badRequest(field, msg string) error {
	return httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: field, Message: msg})
}

func destinationKind() kind {
	return kind{name: configstore.KindDestination, plural: "destinations", prefix: "dst_", check: checkDestination}
}

func checkDestination(r *http.Request, w http.ResponseWriter, _, _ string) (any, error) {
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
