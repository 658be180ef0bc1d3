package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/configstore"
)

// busARN is a well-formed event bus ARN.
const busARN = "arn:aws:events:eu-west-1:123456789012:event-bus/notifications"

// eventBridgeDestination returns the body of an EventBridge destination
// with eventbridge as its channel object.
func eventBridgeDestination(eventbridge string) string {
	return `{"type":"eventbridge","name":"totogi bus","eventbridge":` + eventbridge + `}`
}

func TestEventBridgeDestinationsAreCheckedWhenSaved(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	bus := `"eventBusArn":"` + busARN + `"`
	role := `"roleArn":"arn:aws:iam::210987654321:role/herald-put-events"`
	bad := []struct {
		name, body, field string
	}{
		{"eventbridge type without its object", `{"type":"eventbridge","name":"b"}`, "eventbridge"},
		{"eventbridge type with a webhook", `{"type":"eventbridge","name":"b","webhook":{"url":"https://hooks.example.com/x"},"eventbridge":{` + bus + `}}`, "webhook"},
		{"webhook type with an eventbridge object", `{"type":"webhook","name":"b","webhook":{"url":"https://hooks.example.com/x"},"eventbridge":{` + bus + `}}`, "eventbridge"},
		{"no ARN", eventBridgeDestination(`{}`), "eventbridge.eventBusArn"},
		{"a bus name alone", eventBridgeDestination(`{"eventBusArn":"notifications"}`), "eventbridge.eventBusArn"},
		{"an SQS queue ARN", eventBridgeDestination(`{"eventBusArn":"arn:aws:sqs:eu-west-1:123456789012:notifications"}`), "eventbridge.eventBusArn"},
		{"an event rule ARN", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:eu-west-1:123456789012:rule/notifications"}`), "eventbridge.eventBusArn"},
		{"an account of 11 digits", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:eu-west-1:12345678901:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"no region", eventBridgeDestination(`{"eventBusArn":"arn:aws:events::123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"a region without its number", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:eu-west:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"a made-up region", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:moon-base-1:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"a region in capitals", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:EU-WEST-1:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"a region of another partition", eventBridgeDestination(`{"eventBusArn":"arn:aws-cn:events:eu-west-1:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"a GovCloud region in the commercial partition", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:us-gov-west-1:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"an unknown partition", eventBridgeDestination(`{"eventBusArn":"arn:azure:events:eu-west-1:123456789012:event-bus/notifications"}`), "eventbridge.eventBusArn"},
		{"no bus name", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:eu-west-1:123456789012:event-bus/"}`), "eventbridge.eventBusArn"},
		{"a space in the bus name", eventBridgeDestination(`{"eventBusArn":"arn:aws:events:eu-west-1:123456789012:event-bus/my bus"}`), "eventbridge.eventBusArn"},
		{"an AWS service source", eventBridgeDestination(`{` + bus + `,"source":"aws.events"}`), "eventbridge.source"},
		{"a source starting with a space", eventBridgeDestination(`{` + bus + `,"source":" herald"}`), "eventbridge.source"},
		{"a source with a line break", eventBridgeDestination(`{` + bus + `,"source":"herald\nx"}`), "eventbridge.source"},
		{"a source of 257 characters", eventBridgeDestination(`{` + bus + `,"source":"` + strings.Repeat("s", 257) + `"}`), "eventbridge.source"},
		{"a detail-type of 129 characters", eventBridgeDestination(`{` + bus + `,"detailType":"` + strings.Repeat("d", 129) + `"}`), "eventbridge.detailType"},
		{"a webhook-only format", eventBridgeDestination(`{` + bus + `,"format":"truphone"}`), "eventbridge.format"},
		{"an unknown format", eventBridgeDestination(`{` + bus + `,"format":"xml"}`), "eventbridge.format"},
		{"a user ARN as the role", eventBridgeDestination(`{` + bus + `,"roleArn":"arn:aws:iam::210987654321:user/herald"}`), "eventbridge.roleArn"},
		{"a role without a name", eventBridgeDestination(`{` + bus + `,"roleArn":"arn:aws:iam::210987654321:role/"}`), "eventbridge.roleArn"},
		{"a role with a region", eventBridgeDestination(`{` + bus + `,"roleArn":"arn:aws:iam:eu-west-1:210987654321:role/herald"}`), "eventbridge.roleArn"},
		{"a role in another partition", eventBridgeDestination(`{` + bus + `,"roleArn":"arn:aws-cn:iam::210987654321:role/herald"}`), "eventbridge.roleArn"},
		{"an external id without a role", eventBridgeDestination(`{` + bus + `,"externalId":"tenant-secret-1"}`), "eventbridge.externalId"},
		{"an external id of one character", eventBridgeDestination(`{` + bus + `,` + role + `,"externalId":"x"}`), "eventbridge.externalId"},
		{"an external id with a space", eventBridgeDestination(`{` + bus + `,` + role + `,"externalId":"tenant secret"}`), "eventbridge.externalId"},
	}
	for _, b := range bad {
		r := s.do("POST", "/v1/destinations", key, b.body)
		if r.status != http.StatusBadRequest || !slices.Contains(r.fields(), b.field) {
			t.Errorf("%s: POST %s = %d %s; want 400 naming %s", b.name, b.body, r.status, r.raw, b.field)
		}
	}
	if n := len(s.store.List("acme", configstore.KindDestination)); n != 0 {
		t.Errorf("acme has %d destinations after refused writes", n)
	}

	good := []string{
		busARN,
		"arn:aws:events:ap-southeast-2:123456789012:event-bus/default",
		"arn:aws:events:il-central-1:123456789012:event-bus/aws.partner/example.com/123/orders",
		"arn:aws-us-gov:events:us-gov-west-1:123456789012:event-bus/notifications",
		"arn:aws-cn:events:cn-north-1:123456789012:event-bus/notifications",
		"arn:aws-iso-b:events:us-isob-east-1:123456789012:event-bus/notifications",
		"arn:aws-eusc:events:eusc-de-east-1:123456789012:event-bus/notifications",
	}
	for _, arn := range good {
		s.want(http.StatusCreated, "POST", "/v1/destinations", key, eventBridgeDestination(`{"eventBusArn":"`+arn+`"}`))
	}
}

func TestEventBridgeDestinationStoredWithDefaults(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	r := s.want(http.StatusCreated, "POST", "/v1/destinations", key, eventBridgeDestination(`{"eventBusArn":"`+busARN+`"}`))
	eb, _ := r.body["eventbridge"].(map[string]any)
	if eb["source"] != "herald.notifications" || eb["format"] != "totogi" || eb["eventBusArn"] != busARN || eb["externalIdSet"] != false {
		t.Errorf("created: %s; want source herald.notifications, format totogi, the ARN, externalIdSet false", r.raw)
	}
	doc, _ := s.store.Get("acme", configstore.KindDestination, r.str("id"))
	want := configstore.EventBridgeDestination{EventBusARN: busARN, Source: "herald.notifications", Format: "totogi"}
	if got := configstore.Spec[configstore.Destination](doc).EventBridge; got == nil || *got != want {
		t.Errorf("stored %+v, want %+v", got, want)
	}

	body := eventBridgeDestination(`{"eventBusArn":"` + busARN + `","source":"com.example.billing","detailType":"Balance notice","format":"native"}`)
	r = s.want(http.StatusCreated, "POST", "/v1/destinations", key, body)
	doc, _ = s.store.Get("acme", configstore.KindDestination, r.str("id"))
	want = configstore.EventBridgeDestination{EventBusARN: busARN, Source: "com.example.billing", DetailType: "Balance notice", Format: "native"}
	if got := configstore.Spec[configstore.Destination](doc).EventBridge; got == nil || *got != want {
		t.Errorf("stored %+v, want %+v", got, want)
	}
}

// TestEventBridgeExternalIDIsNeverShown: the external id is the tenant's
// secret; no answer shows it, not even the one that created it, and a
// replace that leaves it out keeps it for the same role.
func TestEventBridgeExternalIDIsNeverShown(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	const secret = "acme-ext-7f3c9a"
	role := "arn:aws:iam::123456789012:role/service-role/herald-put-events"
	body := eventBridgeDestination(`{"eventBusArn":"` + busARN + `","roleArn":"` + role + `","externalId":"` + secret + `"}`)
	created := s.want(http.StatusCreated, "POST", "/v1/destinations", key, body)
	id := created.str("id")
	stored := func() *configstore.EventBridgeDestination {
		doc, _ := s.store.Get("acme", configstore.KindDestination, id)
		return configstore.Spec[configstore.Destination](doc).EventBridge
	}
	if got := stored(); got.ExternalID != secret || got.RoleARN != role {
		t.Fatalf("stored %+v; want the role and the external id", got)
	}
	answers := []reply{
		created,
		s.want(http.StatusOK, "GET", "/v1/destinations/"+id, key, ""),
		s.want(http.StatusOK, "GET", "/v1/destinations", key, ""),
		s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, key, eventBridgeDestination(`{"eventBusArn":"`+busARN+`","roleArn":"`+role+`"}`)),
	}
	for _, r := range answers {
		if strings.Contains(r.raw, secret) || strings.Contains(r.raw, `"externalId"`) {
			t.Errorf("an answer shows the external id: %s", r.raw)
		}
		if !strings.Contains(r.raw, `"externalIdSet":true`) {
			t.Errorf("an answer does not say the external id is set: %s", r.raw)
		}
	}
	if got := stored().ExternalID; got != secret {
		t.Errorf("after a replace without it, the external id is %q; want it kept", got)
	}

	// A new external id replaces the stored one.
	s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, key, eventBridgeDestination(`{"eventBusArn":"`+busARN+`","roleArn":"`+role+`","externalId":"acme-ext-rotated"}`))
	if got := stored().ExternalID; got != "acme-ext-rotated" {
		t.Errorf("after a replace with a new one, the external id is %q", got)
	}
	// Another role does not inherit the old role's external id.
	other := "arn:aws:iam::123456789012:role/another-role"
	r := s.want(http.StatusOK, "PUT", "/v1/destinations/"+id, key, eventBridgeDestination(`{"eventBusArn":"`+busARN+`","roleArn":"`+other+`"}`))
	if got := stored(); got.ExternalID != "" || got.RoleARN != other || !strings.Contains(r.raw, `"externalIdSet":false`) {
		t.Errorf("after changing the role: stored %+v, answer %s; want no external id", got, r.raw)
	}
}
