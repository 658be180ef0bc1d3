package eventbridgesender_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

const (
	tenant = "t1"
	// accessKey is Herald's own key in the tests, as the default chain
	// finds it in the environment.
	accessKey = "AKIAHERALDTEST000001"
	// busARN is the bus the tests put to; moto's account is 123456789012.
	busARN = "arn:aws:events:eu-west-1:123456789012:event-bus/notifications"
)

// awsEnv points the SDK's default chain at endpoint with Herald's test key
// and nothing from the machine (no shared files, no instance metadata).
func awsEnv(endpoint string) []string {
	none := filepath.Join("/nonexistent", "aws")
	return []string{
		"AWS_ENDPOINT_URL=" + endpoint,
		"AWS_ACCESS_KEY_ID=" + accessKey, "AWS_SECRET_ACCESS_KEY=herald-test-secret",
		"AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_ROLE_ARN=", "AWS_WEB_IDENTITY_TOKEN_FILE=",
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
	}
}

// setAWSEnv sets awsEnv(endpoint) for the test.
func setAWSEnv(t *testing.T, endpoint string) {
	t.Helper()
	for _, kv := range awsEnv(endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// newChannel returns the channel on the SDK configuration the environment
// gives (setAWSEnv), closed when the test ends.
func newChannel(t *testing.T, o eventbridgesender.Options) *eventbridgesender.EventBridge {
	t.Helper()
	if o.Calls == 0 {
		o.Calls = 4
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	cfg, err := eventbridgesender.LoadAWSConfig(t.Context(), o.Calls)
	if err != nil {
		t.Fatal(err)
	}
	eb := eventbridgesender.NewEventBridge(cfg, o)
	t.Cleanup(eb.Close)
	return eb
}

// note returns notification seq of account key.
func note(key string, seq int) *notification.Notification {
	n := notification.Sample()
	acct := key
	n.ID = notification.ID(tenant, fmt.Sprintf("%s#%d", key, seq), "rule")
	n.TenantID, n.OrderingKey, n.Event.AccountID = tenant, key, &acct
	n.CreatedAt = time.UnixMilli(1700000000000 + int64(seq)).UTC()
	n.Fields = map[string]string{"key": fmt.Sprintf("%q", key), "seq": fmt.Sprint(seq)}
	return n
}

// bus returns an EventBridge destination to arn, changed by edit.
func bus(arn string, edit func(*configstore.EventBridgeDestination)) configstore.Destination {
	eb := &configstore.EventBridgeDestination{EventBusARN: arn}
	if edit != nil {
		edit(eb)
	}
	return configstore.Destination{Type: eventbridgesender.Channel, Name: "bus", EventBridge: eb}
}

// outcome is one Deliver's answer.
type outcome struct {
	resp delivery.Response
	err  error
}

// deliverAll delivers each notification to dest at once, side by side,
// and returns the outcomes in order.
func deliverAll(t *testing.T, eb *eventbridgesender.EventBridge, dest configstore.Destination, notes []*notification.Notification) []outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := make([]outcome, len(notes))
	var wg sync.WaitGroup
	for i, n := range notes {
		wg.Go(func() {
			resp, err := eb.Deliver(ctx, &delivery.Delivery{Notification: n, DestinationID: "bus", Destination: dest, Attempt: 1})
			out[i] = outcome{resp, err}
		})
	}
	wg.Wait()
	return out
}

// kindOf returns an attempt error's kind and class; ok is false for nil
// or an unclassified error.
func kindOf(err error) (kind delivery.Kind, class string, after time.Duration, ok bool) {
	var ae *delivery.AttemptError
	if !errors.As(err, &ae) {
		return 0, "", 0, false
	}
	return ae.Kind, ae.Class, ae.After, true
}
