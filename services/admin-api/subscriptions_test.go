package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestSubscriptionsArePerResourceAndNotificationName(t *testing.T) {
	s := startAdmin(t)
	key, other := s.tenant("acme"), s.tenant("globex")
	const sim = "/v1/resources/Sim/8944474600000109251/subscriptions"

	first := s.want(http.StatusCreated, "PUT", sim+"/USAGE_THRESHOLD", key, `{"webhookUrl":"https://hooks.example.com/usage"}`)
	secret := first.str("secret")
	if !strings.HasPrefix(secret, "whsec_") || first.str("format") != "native" || first.str("resourceType") != "sim" {
		t.Fatalf("the tenant's first subscription: %s; want its signing secret shown once, format native, type sim", first.raw)
	}
	replaced := s.want(http.StatusOK, "PUT", sim+"/USAGE_THRESHOLD", key, `{"webhookUrl":"https://hooks.example.com/usage2","format":"truphone"}`)
	if replaced.str("secret") != "" || replaced.str("webhookUrl") != "https://hooks.example.com/usage2" {
		t.Errorf("a second PUT: %s; want the new URL and no secret", replaced.raw)
	}
	s.want(http.StatusCreated, "PUT", sim+"/SUBSCRIPTION_END", key, `{"webhookUrl":"https://hooks.example.com/end"}`)

	var names []string
	for _, it := range s.want(http.StatusOK, "GET", strings.Replace(sim, "Sim", "SIM", 1), key, "").items() {
		names = append(names, it["notificationName"].(string)+" "+it["webhookUrl"].(string))
	}
	if want := []string{"SUBSCRIPTION_END https://hooks.example.com/end", "USAGE_THRESHOLD https://hooks.example.com/usage2"}; !slices.Equal(names, want) {
		t.Errorf("the SIM lists %q, want %q", names, want)
	}
	if got := s.want(http.StatusOK, "GET", sim+"/USAGE_THRESHOLD", key, ""); got.str("format") != "truphone" {
		t.Errorf("GET one: %s", got.raw)
	}

	// Another tenant sees none of it, and cannot delete it.
	s.want(http.StatusNotFound, "GET", sim+"/USAGE_THRESHOLD", other, "")
	s.want(http.StatusNotFound, "DELETE", sim+"/USAGE_THRESHOLD", other, "")
	if items := s.want(http.StatusOK, "GET", sim, other, "").items(); len(items) != 0 {
		t.Errorf("another tenant lists %v", items)
	}

	settings := s.want(http.StatusOK, "GET", "/v1/subscription-settings", key, "")
	if strings.Contains(settings.raw, secret) || len(settings.body["signingSecrets"].([]any)) != 1 {
		t.Errorf("settings: %s; want one live secret, not shown", settings.raw)
	}
	rotated := s.want(http.StatusOK, "POST", "/v1/subscription-settings:rotate-secret", key, "")
	if next := rotated.str("secret"); !strings.HasPrefix(next, "whsec_") || next == secret {
		t.Errorf("rotation: %s", rotated.raw)
	}
	if live := s.want(http.StatusOK, "GET", "/v1/subscription-settings", key, "").body["signingSecrets"].([]any); len(live) != 2 {
		t.Errorf("after a rotation %d secrets are live, want 2 (the previous one until its grace ends)", len(live))
	}
	s.want(http.StatusNotFound, "GET", "/v1/subscription-settings", other, "")

	s.want(http.StatusNoContent, "DELETE", sim+"/USAGE_THRESHOLD", key, "")
	s.want(http.StatusNotFound, "DELETE", sim+"/USAGE_THRESHOLD", key, "")
	s.want(http.StatusNotFound, "GET", sim+"/USAGE_THRESHOLD", key, "")

	bad := []struct{ path, body, field string }{
		{sim + "/USAGE_THRESHOLD", `{"webhookUrl":"http://127.0.0.1/hook"}`, "webhookUrl"},
		{sim + "/USAGE_THRESHOLD", `{}`, "webhookUrl"},
		{sim + "/USAGE_THRESHOLD", `{"webhookUrl":"https://hooks.example.com/","format":"xml"}`, "format"},
		{sim + "/USAGE%20THRESHOLD", `{"webhookUrl":"https://hooks.example.com/"}`, "notificationName"},
		{"/v1/resources/9sim/1/subscriptions/N", `{"webhookUrl":"https://hooks.example.com/"}`, "resourceType"},
	}
	for _, b := range bad {
		if r := s.want(http.StatusBadRequest, "PUT", b.path, key, b.body); !slices.Contains(r.fields(), b.field) {
			t.Errorf("PUT %s %s: problem %s does not name %s", b.path, b.body, r.raw, b.field)
		}
	}
}
