package eventbridgesender_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
	"github.com/heraldhq/herald/services/eventbridge-sender/internal/eventbridgetest"
)

// detailID returns the notification id an entry's detail carries.
func detailID(detail string) string {
	var d struct {
		NotificationID string `json:"notificationid"`
		ID             string `json:"id"`
	}
	_ = json.Unmarshal([]byte(detail), &d)
	return d.NotificationID + d.ID
}

// entrySize is an entry's size as EventBridge counts it.
func entrySize(e eventbridgetest.Entry) int {
	return 14 + len(e.Source) + len(e.DetailType) + len(e.Detail)
}

func TestBusyBusFillsItsCallsAndAQuietOneIsNotHeldBack(t *testing.T) {
	srv := eventbridgetest.New(nil, eventbridgetest.Latency(20*time.Millisecond))
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 10 * time.Millisecond, Calls: 1})
	dest := bus(busARN, nil)

	// A lone entry goes alone, once its linger is over.
	began := time.Now()
	if out := deliverAll(t, eb, dest, []*notification.Notification{note("quiet", 0)}); out[0].err != nil {
		t.Fatalf("lone entry: %v", out[0].err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("a lone entry took %s", took)
	}
	if calls := srv.Calls(); len(calls) != 1 || len(calls[0].Entries) != 1 {
		t.Fatalf("calls for a lone entry: %+v", calls)
	}

	// 100 at once, one call in flight at a time: the calls fill while the
	// one before is under way.
	var notes []*notification.Notification
	for i := range 100 {
		notes = append(notes, note(fmt.Sprintf("acct-%02d", i), i))
	}
	for i, o := range deliverAll(t, eb, dest, notes) {
		if o.err != nil || o.resp.StatusCode != 200 || !bytes.Contains(o.resp.Excerpt, []byte(`"EventId"`)) {
			t.Errorf("notification %d: %d %s %v", i, o.resp.StatusCode, o.resp.Excerpt, o.err)
		}
	}
	calls := srv.Calls()[1:]
	seen := map[string]bool{}
	for i, c := range calls {
		if len(c.Entries) > eventbridgesender.MaxEntries {
			t.Errorf("call %d has %d entries", i, len(c.Entries))
		}
		for _, e := range c.Entries {
			seen[detailID(e.Detail)] = true
		}
	}
	if len(seen) != 100 {
		t.Errorf("%d notifications arrived, want 100", len(seen))
	}
	if len(calls) > 11 {
		t.Errorf("100 entries took %d calls; at most one call should be short of 10", len(calls))
	}
	t.Logf("100 entries in %d calls", len(calls))
}

func TestCallsStayWithin256KB(t *testing.T) {
	srv := eventbridgetest.New(nil, eventbridgetest.Latency(20*time.Millisecond))
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 50 * time.Millisecond, Calls: 1})
	var notes []*notification.Notification
	for i := range 6 {
		n := note(fmt.Sprintf("acct-%d", i), i)
		n.Fields["blob"] = fmt.Sprintf("%q", strings.Repeat("x", 100<<10))
		notes = append(notes, n)
	}
	for i, o := range deliverAll(t, eb, bus(busARN, nil), notes) {
		if o.err != nil {
			t.Errorf("notification %d: %v", i, o.err)
		}
	}
	entries := 0
	for i, c := range srv.Calls() {
		size := 0
		for _, e := range c.Entries {
			size += entrySize(e)
		}
		entries += len(c.Entries)
		if size > eventbridgesender.MaxBatchBytes || len(c.Entries) > 2 {
			t.Errorf("call %d: %d entries, %d bytes; at most two entries of 100 KB fit in 256 KB", i, len(c.Entries), size)
		}
	}
	if entries != 6 {
		t.Errorf("%d entries sent, want 6", entries)
	}

	// An entry that cannot fit in any call is refused before one is made.
	huge := note("huge", 0)
	huge.Fields["blob"] = fmt.Sprintf("%q", strings.Repeat("x", 257<<10))
	before := len(srv.Calls())
	out := deliverAll(t, eb, bus(busARN, nil), []*notification.Notification{huge})
	if kind, class, _, _ := kindOf(out[0].err); kind != delivery.Permanent || class != "payload" {
		t.Errorf("an entry over 256 KB: %v; want permanent, class payload", out[0].err)
	}
	if len(srv.Calls()) != before {
		t.Error("an entry over 256 KB was sent")
	}
}

func TestEntryResultsDecideEachDelivery(t *testing.T) {
	codes := []string{"", "ThrottlingException", "InternalFailure", "InternalException",
		"MalformedDetail", "AccessDeniedException", "NotAuthorizedForSourceException", "InvalidArgument", ""}
	retryable := map[string]bool{"ThrottlingException": true, "InternalFailure": true, "InternalException": true}
	var notes []*notification.Notification
	codeOf := map[string]string{}
	for i, code := range codes {
		n := note(fmt.Sprintf("acct-%d", i), i)
		notes = append(notes, n)
		codeOf[n.ID] = code
	}
	srv := eventbridgetest.New(func(n int, c eventbridgetest.Call) eventbridgetest.Reply {
		var r eventbridgetest.Reply
		for _, e := range c.Entries {
			code := ""
			if n == 0 {
				code = codeOf[detailID(e.Detail)]
			}
			r.EntryCodes = append(r.EntryCodes, code)
		}
		return r
	})
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 200 * time.Millisecond, Calls: 1})
	dest := bus(busARN, nil)

	var again []*notification.Notification
	for i, o := range deliverAll(t, eb, dest, notes) {
		code := codes[i]
		kind, class, _, classified := kindOf(o.err)
		switch {
		case code == "":
			if o.err != nil {
				t.Errorf("accepted entry %d: %v", i, o.err)
			}
		case retryable[code]:
			if !classified || kind != delivery.Retry || class != code {
				t.Errorf("entry failed with %s: %v; want a retry of class %s", code, o.err, code)
			}
			again = append(again, notes[i])
		default:
			if !classified || kind != delivery.Permanent || class != code {
				t.Errorf("entry failed with %s: %v; want permanent, class %s", code, o.err, code)
			}
		}
		if code != "" && !bytes.Contains(o.resp.Excerpt, []byte(code)) {
			t.Errorf("entry failed with %s: the attempt's excerpt %s does not say so", code, o.resp.Excerpt)
		}
	}
	if calls := srv.Calls(); len(calls) != 1 || len(calls[0].Entries) != len(codes) {
		t.Fatalf("first round: %d calls; want one call of %d entries (no call retried whole)", len(calls), len(codes))
	}

	// The engine tries the retryable ones again: they alone are sent.
	for i, o := range deliverAll(t, eb, dest, again) {
		if o.err != nil {
			t.Errorf("second attempt of %s: %v", again[i].ID, o.err)
		}
	}
	calls := srv.Calls()
	sent := map[string]int{}
	for _, c := range calls {
		for _, e := range c.Entries {
			sent[detailID(e.Detail)]++
		}
	}
	for _, n := range notes {
		want := 1
		if retryable[codeOf[n.ID]] {
			want = 2
		}
		if sent[n.ID] != want {
			t.Errorf("entry that first got %q was sent %d times, want %d", codeOf[n.ID], sent[n.ID], want)
		}
	}
}

func TestCallLevelThrottlingBacksOffTheWholeClient(t *testing.T) {
	srv := eventbridgetest.New(func(n int, _ eventbridgetest.Call) eventbridgetest.Reply {
		if n == 0 {
			return eventbridgetest.Reply{Code: "ThrottlingException"}
		}
		return eventbridgetest.Reply{}
	})
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: time.Millisecond, Calls: 4})

	out := deliverAll(t, eb, bus(busARN, nil), []*notification.Notification{note("a", 0)})
	kind, class, after, _ := kindOf(out[0].err)
	if kind != delivery.Retry || class != "ThrottlingException" || after < 50*time.Millisecond {
		t.Fatalf("throttled call: %v (after %s); want a retry of class ThrottlingException after the client's backoff", out[0].err, after)
	}
	if n := len(srv.Calls()); n != 1 {
		t.Errorf("the SDK made %d calls; throttling is the client's backoff's to answer, not the SDK's", n)
	}
	throttledAt := srv.Calls()[0].At

	// Another region is another client and is not held back; the
	// throttled client waits out its backoff before its next call.
	other := bus("arn:aws:events:eu-central-1:123456789012:event-bus/notifications", nil)
	if o := deliverAll(t, eb, other, []*notification.Notification{note("b", 0)}); o[0].err != nil {
		t.Fatal(o[0].err)
	}
	if o := deliverAll(t, eb, bus(busARN, nil), []*notification.Notification{note("c", 0)}); o[0].err != nil {
		t.Fatal(o[0].err)
	}
	calls := srv.Calls()
	if len(calls) != 3 || calls[1].Region != "eu-central-1" || calls[2].Region != "eu-west-1" {
		t.Fatalf("calls after the throttle: %+v", calls)
	}
	if waited := calls[2].At.Sub(throttledAt); waited < after-5*time.Millisecond {
		t.Errorf("the throttled client called again after %s, within its backoff of %s", waited, after)
	}
	if !calls[1].At.Before(calls[2].At) {
		t.Error("the other region's call waited for the throttled client")
	}
}

// TestFailingCallsDoNotExhaustARetryQuota: 40 calls in a row fail with
// 500. The SDK's default retry quota (a token bucket per client, shared
// by every tenant on it) would be empty after some 35 retries and fail
// later calls without trying them; here every call has its retries.
func TestFailingCallsDoNotExhaustARetryQuota(t *testing.T) {
	srv := eventbridgetest.New(func(int, eventbridgetest.Call) eventbridgetest.Reply {
		return eventbridgetest.Reply{Code: "InternalFailure", Status: 500}
	})
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Calls: 1})
	const ops = 40
	for i := range ops {
		out := deliverAll(t, eb, bus(busARN, nil), []*notification.Notification{note("a", i)})
		kind, class, _, _ := kindOf(out[0].err)
		if kind != delivery.Retry || class != "InternalFailure" || strings.Contains(out[0].err.Error(), "quota") {
			t.Fatalf("call %d: %v; want a retry of class InternalFailure", i, out[0].err)
		}
	}
	if calls, _ := srv.Counts(); calls != 3*ops {
		t.Errorf("%d HTTP calls for %d failing PutEvents; want 3 attempts each", calls, ops)
	}
}

func TestAssumedRoleCredentialsAreCachedPerDestination(t *testing.T) {
	srv := eventbridgetest.New(nil)
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 5 * time.Millisecond, Calls: 2})
	const role = "arn:aws:iam::123456789012:role/herald-put-events"
	withRole := func(externalID string) configstore.Destination {
		return bus(busARN, func(d *configstore.EventBridgeDestination) { d.RoleARN, d.ExternalID = role, externalID })
	}
	batch := func(prefix string, n int) []*notification.Notification {
		var out []*notification.Notification
		for i := range n {
			out = append(out, note(prefix, i))
		}
		return out
	}
	for _, round := range []int{25, 5} {
		for _, o := range deliverAll(t, eb, withRole("ext-one"), batch("role", round)) {
			if o.err != nil {
				t.Fatal(o.err)
			}
		}
	}
	assumed := srv.AssumedRoles()
	if len(assumed) != 1 {
		t.Fatalf("AssumeRole called %d times for 30 entries; want once, then cached", len(assumed))
	}
	if a := assumed[0]; a.RoleARN != role || a.ExternalID != "ext-one" || a.SessionName != "herald-eventbridge-sender" {
		t.Errorf("AssumeRole with %+v", a)
	}
	for _, c := range srv.Calls() {
		if c.AccessKey != assumed[0].AccessKey || c.Region != "eu-west-1" {
			t.Errorf("a call to the role's destination signed by %s in %s; want the assumed key in eu-west-1", c.AccessKey, c.Region)
		}
	}

	// Without a role, Herald's own credentials; with another external id,
	// another session.
	before := len(srv.Calls())
	if o := deliverAll(t, eb, bus(busARN, nil), batch("own", 1)); o[0].err != nil {
		t.Fatal(o[0].err)
	}
	if o := deliverAll(t, eb, withRole("ext-two"), batch("two", 1)); o[0].err != nil {
		t.Fatal(o[0].err)
	}
	calls := srv.Calls()[before:]
	assumed = srv.AssumedRoles()
	if len(assumed) != 2 || assumed[1].ExternalID != "ext-two" {
		t.Fatalf("AssumeRole calls: %+v; want a second one with ext-two", assumed)
	}
	if len(calls) != 2 || calls[0].AccessKey != accessKey || calls[1].AccessKey != assumed[1].AccessKey {
		t.Errorf("calls signed by %v; want Herald's key, then the second session's", calls)
	}
}

func TestCallRefusedForOneBusFailsOnlyItsEntries(t *testing.T) {
	const missing = "arn:aws:events:eu-west-1:123456789012:event-bus/missing"
	srv := eventbridgetest.New(func(_ int, c eventbridgetest.Call) eventbridgetest.Reply {
		for _, e := range c.Entries {
			if e.EventBusName == missing {
				return eventbridgetest.Reply{Code: "ResourceNotFoundException"}
			}
		}
		return eventbridgetest.Reply{}
	})
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Linger: 200 * time.Millisecond, Calls: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	results := make(chan outcome, 5)
	for i := range 5 {
		dest := bus(busARN, nil)
		if i == 2 {
			dest = bus(missing, nil)
		}
		go func() {
			resp, err := eb.Deliver(ctx, &delivery.Delivery{Notification: note("k", i), DestinationID: "bus", Destination: dest, Attempt: 1})
			results <- outcome{resp, err}
		}()
	}
	var ok, refused int
	for range 5 {
		o := <-results
		kind, class, _, _ := kindOf(o.err)
		switch {
		case o.err == nil:
			ok++
		case kind == delivery.Permanent && class == "ResourceNotFoundException":
			refused++
		default:
			t.Errorf("unexpected outcome %v", o.err)
		}
	}
	if ok != 4 || refused != 1 {
		t.Errorf("%d delivered, %d refused; want 4 and the missing bus's 1", ok, refused)
	}
	if calls := srv.Calls(); len(calls[0].Entries) != 5 {
		t.Errorf("the first call had %d entries; the test wants the five together", len(calls[0].Entries))
	}
}

func TestEntryCarriesTheDestinationsSourceDetailTypeAndFormat(t *testing.T) {
	srv := eventbridgetest.New(nil)
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Calls: 1})
	n := note("acct-1", 3)
	webhookBody, _, err := mustFormat(t, notification.FormatTotogi).Render(n)
	if err != nil {
		t.Fatal(err)
	}
	native, _ := n.JSON()
	for _, c := range []struct {
		name                     string
		dest                     configstore.Destination
		source, detailType, body string
	}{
		{"defaults", bus(busARN, nil), "herald.notifications", n.Name, ""},
		{"native, own source and detail-type", bus(busARN, func(d *configstore.EventBridgeDestination) {
			d.Source, d.DetailType, d.Format = "com.example.billing", "Balance notice", "native"
		}), "com.example.billing", "Balance notice", string(native)},
	} {
		before := len(srv.Calls())
		if o := deliverAll(t, eb, c.dest, []*notification.Notification{n}); o[0].err != nil {
			t.Fatalf("%s: %v", c.name, o[0].err)
		}
		calls := srv.Calls()[before:]
		if len(calls) != 1 || len(calls[0].Entries) != 1 {
			t.Fatalf("%s: calls %+v", c.name, calls)
		}
		e := calls[0].Entries[0]
		if e.EventBusName != busARN || e.Source != c.source || e.DetailType != c.detailType || !e.Time.Equal(n.CreatedAt) {
			t.Errorf("%s: entry bus %s, source %s, detail-type %s, time %s", c.name, e.EventBusName, e.Source, e.DetailType, e.Time)
		}
		if c.body != "" {
			jsonEqual(t, c.name, e.Detail, c.body)
			continue
		}
		// Totogi's detail is the webhook totogi body with the id added.
		var detail map[string]any
		if err := json.Unmarshal([]byte(e.Detail), &detail); err != nil {
			t.Fatal(err)
		}
		if detail["notificationid"] != n.ID {
			t.Errorf("%s: notificationid %v, want %s", c.name, detail["notificationid"], n.ID)
		}
		delete(detail, "notificationid")
		b, _ := json.Marshal(detail)
		jsonEqual(t, c.name, string(b), string(webhookBody))
	}
}

func mustFormat(t *testing.T, name string) *notification.Format {
	t.Helper()
	f, err := notification.NewFormat(name, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// jsonEqual fails the test unless got and want are the same JSON value.
func jsonEqual(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: %v in %s", what, err, want)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

func TestDeliverAfterCloseFailsAtOnce(t *testing.T) {
	srv := eventbridgetest.New(nil)
	t.Cleanup(srv.Close)
	setAWSEnv(t, srv.URL)
	eb := newChannel(t, eventbridgesender.Options{Calls: 1})
	eb.Close()
	out := deliverAll(t, eb, bus(busARN, nil), []*notification.Notification{note("a", 0)})
	if !errors.Is(out[0].err, context.Canceled) {
		t.Errorf("deliver after Close: %v; want it canceled", out[0].err)
	}
	if calls, _ := srv.Counts(); calls != 0 {
		t.Errorf("%d calls after Close", calls)
	}
}
