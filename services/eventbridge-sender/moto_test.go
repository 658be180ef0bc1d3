package eventbridgesender_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/peertest"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

// checkEvent compares an event from the queue with the notification it
// should carry, field by field.
func checkEvent(t *testing.T, e peertest.BusEvent, n *notification.Notification, source, detailType, format string) {
	t.Helper()
	want, err := eventbridgesender.Detail(n, format)
	if err != nil {
		t.Fatal(err)
	}
	if e.Source != source || e.DetailType != detailType || e.Region != "eu-west-1" {
		t.Errorf("event %s: source %q, detail-type %q, region %s; want %q, %q, eu-west-1", e.ID, e.Source, e.DetailType, e.Region, source, detailType)
	}
	if !e.Time.Equal(n.CreatedAt.Truncate(time.Second)) {
		t.Errorf("event %s: time %s, want the notification's %s", e.ID, e.Time, n.CreatedAt)
	}
	jsonEqual(t, fmt.Sprintf("detail of %s", n.ID), string(e.Detail), string(want))
}

func TestEventsArriveOnTheBusAsSent(t *testing.T) {
	m := peertest.StartMoto(t)
	b := m.QueuedBus(t, "eu-west-1", "notifications")
	setAWSEnv(t, m.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 10 * time.Millisecond, Calls: 2})

	totogi, native := note("acct-1", 1), note("acct-2", 2)
	own := bus(b.ARN, func(d *configstore.EventBridgeDestination) {
		d.Source, d.DetailType, d.Format = "com.example.billing", "Balance notice", notification.FormatNative
	})
	for _, c := range []struct {
		n    *notification.Notification
		dest configstore.Destination
	}{{totogi, bus(b.ARN, nil)}, {native, own}} {
		if o := deliverAll(t, eb, c.dest, []*notification.Notification{c.n}); o[0].err != nil {
			t.Fatalf("deliver %s: %v", c.n.ID, o[0].err)
		}
	}
	events := b.Receive(t, 2, 30*time.Second)
	byID := map[string]peertest.BusEvent{}
	for _, e := range events {
		var d map[string]any
		_ = json.Unmarshal(e.Detail, &d)
		id, _ := d["notificationid"].(string)
		if id == "" {
			id, _ = d["id"].(string)
		}
		byID[id] = e
	}
	checkEvent(t, byID[totogi.ID], totogi, "herald.notifications", totogi.Name, notification.FormatTotogi)
	checkEvent(t, byID[native.ID], native, "com.example.billing", "Balance notice", notification.FormatNative)

	// A bus that does not exist is refused for good.
	missing := "arn:aws:events:eu-west-1:123456789012:event-bus/missing"
	o := deliverAll(t, eb, bus(missing, nil), []*notification.Notification{note("acct-3", 3)})
	if kind, class, _, _ := kindOf(o[0].err); kind != delivery.Permanent || class != "ResourceNotFoundException" {
		t.Errorf("put to a missing bus: %v; want permanent, class ResourceNotFoundException", o[0].err)
	}
}
