package ingest_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// A Balance allowance before and after some usage, as upstream posts it.
const (
	balanceBefore = `{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":800,"remaining":224}`
	balanceAfter  = `{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":1000,"remaining":24,"planId":"plan-5g"}`
)

// balanceUpdate is a valid Balance UPDATE without optional envelope fields.
const balanceUpdate = `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`

// The images above as they read back from the events topic.
var (
	decodedBefore = map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1024.0, "used": 800.0, "remaining": 224.0, "planId": nil, "kind": nil, "tiers": map[string]any{}}
	decodedAfter  = map[string]any{"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1024.0, "used": 1000.0, "remaining": 24.0, "planId": "plan-5g", "kind": nil, "tiers": map[string]any{}}
)

func TestAcceptedEventIsProducedAsAvroKeyedByTenant(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	given := time.Date(2026, 3, 4, 5, 6, 7, 89e6, time.UTC)
	for _, tc := range []struct {
		name       string
		key        string
		body       string
		wantKey    string
		wantTenant string
		wantID     string // empty: a fresh ULID
		wantAt     time.Time
		wantEnv    map[string]any // envelope fields besides ids, time and images
	}{
		{
			name:       "account event is keyed by its account and gets an id and the time",
			key:        acmeKey,
			body:       `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","accountId":"acc-1","old":` + balanceBefore + `,"new":` + balanceAfter + `}`,
			wantKey:    "acme/acc-1",
			wantTenant: "acme",
			wantEnv:    map[string]any{"entityType": "Balance", "entityId": "bal-1", "operation": "UPDATE", "accountId": "acc-1", "deviceId": nil, "correlationId": nil},
		},
		{
			name:       "event without account is keyed by its entity and keeps the given id and time",
			key:        globexKey,
			body:       `{"eventId":"evt-given-1","occurredAt":"2026-03-04T05:06:07.089Z","entityType":"Balance","entityId":"bal-1","operation":"UPDATE","deviceId":"sim-7","correlationId":"session-3","old":` + balanceBefore + `,"new":` + balanceAfter + `}`,
			wantKey:    "globex/Balance/bal-1",
			wantTenant: "globex",
			wantID:     "evt-given-1",
			wantAt:     given,
			wantEnv:    map[string]any{"entityType": "Balance", "entityId": "bal-1", "operation": "UPDATE", "accountId": nil, "deviceId": "sim-7", "correlationId": "session-3"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Millisecond)
			r := s.post("/v1/events", tc.key, tc.body)
			after := time.Now()
			if r.Status != http.StatusAccepted {
				t.Fatalf("status %d (%s %v), want 202", r.Status, r.Detail, r.Errors)
			}
			if tc.wantID == "" {
				if _, err := ulid.ParseStrict(r.EventID); err != nil {
					t.Errorf("generated eventId %q is not a ULID: %v", r.EventID, err)
				}
			} else if r.EventID != tc.wantID {
				t.Errorf("eventId %q, want the given %q", r.EventID, tc.wantID)
			}

			rec := s.next(1)[0]
			if string(rec.Key) != tc.wantKey {
				t.Errorf("key %q, want %q", rec.Key, tc.wantKey)
			}
			got := s.decode(rec)
			if got["eventId"] != r.EventID {
				t.Errorf("record eventId %v, answered %q", got["eventId"], r.EventID)
			}
			if got["tenantId"] != tc.wantTenant {
				t.Errorf("tenantId %v, want the key's tenant %q", got["tenantId"], tc.wantTenant)
			}
			for f, want := range tc.wantEnv {
				if got[f] != want {
					t.Errorf("%s = %#v, want %#v", f, got[f], want)
				}
			}
			at, _ := got["occurredAt"].(time.Time)
			switch {
			case !tc.wantAt.IsZero() && !at.Equal(tc.wantAt):
				t.Errorf("occurredAt %v, want the given %v", got["occurredAt"], tc.wantAt)
			case tc.wantAt.IsZero() && (at.Before(before) || at.After(after)):
				t.Errorf("occurredAt %v, want the time of the request (%v to %v)", got["occurredAt"], before, after)
			}
			if !reflect.DeepEqual(got["old"], decodedBefore) {
				t.Errorf("old = %#v\nwant %#v", got["old"], decodedBefore)
			}
			if !reflect.DeepEqual(got["new"], decodedAfter) {
				t.Errorf("new = %#v\nwant %#v", got["new"], decodedAfter)
			}
		})
	}
}

func TestInvalidEventIsRefusedNamingTheFieldAndNotProduced(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string // the field the problem names; empty: none needed
	}{
		{"missing entityType", `{"entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "entityType"},
		{"missing entityId", `{"entityType":"Balance","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "entityId"},
		{"operation not CREATE, UPDATE or DELETE", `{"entityType":"Balance","entityId":"bal-1","operation":"MERGE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "operation"},
		{"entityType that is not a name", `{"entityType":"../Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "entityType"},
		{"eventId over 256 bytes", `{"eventId":"` + strings.Repeat("e", 257) + `","entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "eventId"},
		{"CREATE without a new image", `{"entityType":"Balance","entityId":"bal-1","operation":"CREATE"}`, 400, "new"},
		{"CREATE with an old image", `{"entityType":"Balance","entityId":"bal-1","operation":"CREATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "old"},
		{"UPDATE without an old image", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","new":` + balanceAfter + `}`, 400, "old"},
		{"DELETE without an old image", `{"entityType":"Balance","entityId":"bal-1","operation":"DELETE"}`, 400, "old"},
		{"DELETE with a new image", `{"entityType":"Balance","entityId":"bal-1","operation":"DELETE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "new"},
		{"entity type with no registered schema", `{"entityType":"Spaceship","entityId":"s-1","operation":"CREATE","new":{"id":"s-1"}}`, 422, "entityType"},
		{"field of the wrong type", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":{"id":"bal-1","accountId":"acc-1","unit":"MB","total":"lots","used":1000,"remaining":24}}`, 400, "new.total"},
		{"required field missing", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":{"id":"bal-1","accountId":"acc-1","total":1024,"used":1000,"remaining":24}}`, 400, "new.unit"},
		{"field the schema does not have", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":1000,"remaining":24,"extra":1}}`, 400, "new.extra"},
		{"tenantId in the body", `{"tenantId":"globex","entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "tenantId"},
		{"unknown top-level field", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","colour":"red","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "colour"},
		{"field of the wrong type in the envelope", `{"entityType":"Balance","entityId":7,"operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "entityId"},
		{"occurredAt not an RFC 3339 time", `{"occurredAt":"2026-03-04","entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":` + balanceAfter + `}`, 400, "occurredAt"},
		{"a double overflowing to infinity", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":1000,"remaining":1e400}}`, 400, "new.remaining"},
		{"an integer of 400 digits for a double", `{"entityType":"Balance","entityId":"bal-1","operation":"UPDATE","old":` + balanceBefore + `,"new":{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":1000,"remaining":1` + strings.Repeat("0", 399) + `}}`, 400, "new.remaining"},
		{"a long past 2^63-1", `{"entityType":"BillRun","entityId":"br-1","operation":"CREATE","new":{"id":"br-1","status":"DONE","invoiceCount":9223372036854775808}}`, 400, "new.invoiceCount"},
		{"a long with a fraction", `{"entityType":"BillRun","entityId":"br-1","operation":"CREATE","new":{"id":"br-1","status":"DONE","invoiceCount":1.5}}`, 400, "new.invoiceCount"},
		{"a long written with a decimal point", `{"entityType":"BillRun","entityId":"br-1","operation":"CREATE","new":{"id":"br-1","status":"DONE","invoiceCount":1.0}}`, 400, "new.invoiceCount"},
		{"invalid UTF-8 in the envelope", "{\"entityType\":\"Balance\",\"entityId\":\"bal-1\",\"operation\":\"UPDATE\",\"accountId\":\"\xff\xfeacct\",\"old\":" + balanceBefore + ",\"new\":" + balanceAfter + "}", 400, "accountId"},
		{"invalid UTF-8 in an image", "{\"entityType\":\"Balance\",\"entityId\":\"bal-1\",\"operation\":\"UPDATE\",\"old\":" + balanceBefore + ",\"new\":{\"id\":\"bal-1\",\"accountId\":\"acc-1\",\"unit\":\"M\xc3\",\"total\":1024,\"used\":1000,\"remaining\":24}}", 400, "new.unit"},
		{"invalid UTF-8 in a name in an image", "{\"entityType\":\"Balance\",\"entityId\":\"bal-1\",\"operation\":\"UPDATE\",\"old\":" + balanceBefore + ",\"new\":{\"id\":\"bal-1\",\"accountId\":\"acc-1\",\"unit\":\"MB\",\"total\":1024,\"used\":1000,\"remaining\":24,\"plan\xffId\":\"p\"}}", 400, "new.plan\ufffdId"},
		{"invalid JSON", `{"entityType":"Balance",`, 400, ""},
		{"not JSON", `entityType=Balance`, 400, ""},
		{"two JSON values", balanceUpdate + balanceUpdate, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.post("/v1/events", acmeKey, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d (%s %v), want %d", r.Status, r.Detail, r.Errors, tc.status)
			}
			if r.ContentType != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", r.ContentType)
			}
			if tc.field != "" && !slices.Contains(r.fields(), tc.field) {
				t.Errorf("problem names %q, want %q (%s)", r.fields(), tc.field, r.Detail)
			}
		})
	}
	if n := s.produced(); n != 0 {
		t.Errorf("the events topic holds %d records after only refused events, want 0", n)
	}
}

func TestBatchIsProducedWholeOrNotAtAll(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	event := func(id, entity, newImage string) string {
		return fmt.Sprintf(`{"eventId":%q,"entityType":"Balance","entityId":%q,"operation":"UPDATE","old":%s,"new":%s}`, id, entity, balanceBefore, newImage)
	}
	batch := func(events ...string) string { return `{"events":[` + strings.Join(events, ",") + `]}` }
	wrongType := `{"id":"bal-1","accountId":"acc-1","unit":"MB","total":"lots","used":1000,"remaining":24}`

	t.Run("all valid: every event produced, ids answered in order", func(t *testing.T) {
		r := s.post("/v1/events:batch", acmeKey, batch(
			event("evt-a", "bal-1", balanceAfter),
			event("", "bal-2", balanceAfter),
			event("evt-c", "bal-3", balanceAfter),
		))
		if r.Status != http.StatusAccepted {
			t.Fatalf("status %d (%s %v), want 202", r.Status, r.Detail, r.Errors)
		}
		if len(r.EventIDs) != 3 || r.EventIDs[0] != "evt-a" || r.EventIDs[2] != "evt-c" {
			t.Fatalf("eventIds %q, want [evt-a <ULID> evt-c]", r.EventIDs)
		}
		if _, err := ulid.ParseStrict(r.EventIDs[1]); err != nil {
			t.Errorf("generated eventId %q is not a ULID: %v", r.EventIDs[1], err)
		}
		keyOf := map[string]string{}
		for _, rec := range s.next(3) {
			keyOf[s.decode(rec)["eventId"].(string)] = string(rec.Key)
		}
		for i, id := range r.EventIDs {
			if want := fmt.Sprintf("acme/Balance/bal-%d", i+1); keyOf[id] != want {
				t.Errorf("event %s: key %q, want %q", id, keyOf[id], want)
			}
		}
	})

	produced := s.produced()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		fields []string
	}{
		{
			name:   "one invalid event refuses the batch, naming it by index",
			body:   batch(event("x1", "bal-1", balanceAfter), event("x2", "bal-2", balanceAfter), event("x3", "bal-3", wrongType), event("x4", "bal-4", balanceAfter)),
			status: 400,
			fields: []string{"events[2].new.total"},
		},
		{
			name:   "every invalid event is named",
			body:   batch(event("y1", "", balanceAfter), event("y2", "bal-2", balanceAfter), event("y3", "bal-3", wrongType)),
			status: 400,
			fields: []string{"events[0].entityId", "events[2].new.total"},
		},
		{
			name:   "a JSON type error is named by index",
			body:   batch(event("w1", "bal-1", balanceAfter), `{"entityType":"Balance","entityId":5,"operation":"CREATE","new":{}}`),
			status: 400,
			fields: []string{"events[1].entityId"},
		},
		{
			name:   "a double overflowing to infinity in a batch",
			body:   batch(event("v1", "bal-1", balanceAfter), event("v2", "bal-2", `{"id":"bal-1","accountId":"acc-1","unit":"MB","total":1024,"used":1000,"remaining":-1e400}`)),
			status: 400,
			fields: []string{"events[1].new.remaining"},
		},
		{
			name:   "invalid UTF-8 in a batch",
			body:   batch(event("u1", "bal-1", balanceAfter), strings.Replace(event("u2", "bal-2", balanceAfter), "bal-2", "bal-\xff", 1)),
			status: 400,
			fields: []string{"events[1].entityId"},
		},
		{
			name:   "unknown entity type in a batch",
			body:   batch(event("z1", "bal-1", balanceAfter), `{"entityType":"Spaceship","entityId":"s-1","operation":"CREATE","new":{"id":"s-1"}}`),
			status: 422,
			fields: []string{"events[1].entityType"},
		},
		{
			name:   "more events than the maximum",
			body:   batch(slices.Repeat([]string{event("", "bal-1", balanceAfter)}, maxBatch+1)...),
			status: 400,
			fields: []string{"events"},
		},
		{name: "no events", body: batch(), status: 400, fields: []string{"events"}},
		{name: "no events field", body: `{}`, status: 400, fields: []string{"events"}},
		{name: "a single event rather than a batch", body: balanceUpdate, status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.post("/v1/events:batch", acmeKey, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d (%s %v), want %d", r.Status, r.Detail, r.Errors, tc.status)
			}
			if r.ContentType != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", r.ContentType)
			}
			for _, f := range tc.fields {
				if !slices.Contains(r.fields(), f) {
					t.Errorf("problem names %q, want %q among them (%s)", r.fields(), f, r.Detail)
				}
			}
			if n := s.produced(); n != produced {
				t.Errorf("the events topic grew from %d to %d records on a refused batch", produced, n)
			}
		})
	}

	t.Run("exactly the maximum is accepted", func(t *testing.T) {
		r := s.post("/v1/events:batch", acmeKey, batch(slices.Repeat([]string{event("", "bal-1", balanceAfter)}, maxBatch)...))
		if r.Status != http.StatusAccepted || len(r.EventIDs) != maxBatch {
			t.Fatalf("status %d with %d ids (%s %v), want 202 with %d", r.Status, len(r.EventIDs), r.Detail, r.Errors, maxBatch)
		}
		if n := s.produced(); n != produced+maxBatch {
			t.Errorf("the events topic holds %d records, want %d", n, produced+maxBatch)
		}
	})
}

func TestEventsNeedAnAPIKeyWithEventsWrite(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for _, path := range []string{"/v1/events", "/v1/events:batch"} {
		body := balanceUpdate
		if strings.HasSuffix(path, ":batch") {
			body = `{"events":[` + balanceUpdate + `]}`
		}
		for _, tc := range []struct {
			name   string
			key    string
			status int
		}{
			{"no key", "", http.StatusUnauthorized},
			{"unknown key", "hk_nobody", http.StatusUnauthorized},
			{"key without events:write", acmeReaderKey, http.StatusForbidden},
		} {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				r := s.post(path, tc.key, body)
				if r.Status != tc.status {
					t.Fatalf("status %d (%s), want %d", r.Status, r.Detail, tc.status)
				}
				if r.ContentType != "application/problem+json" {
					t.Errorf("Content-Type %q, want application/problem+json", r.ContentType)
				}
				if tc.status == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q, want a Bearer challenge", r.Header.Get("WWW-Authenticate"))
				}
			})
		}
	}
	if n := s.produced(); n != 0 {
		t.Errorf("the events topic holds %d records after only refused requests, want 0", n)
	}
}

func TestNewEntityTypeIsAcceptedWithoutRestart(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	const router = `{"entityType":"Router","entityId":"rt-1","operation":"CREATE","accountId":"acc-9","new":{"id":"rt-1","model":"X1","online":true}}`

	if r := s.post("/v1/events", acmeKey, router); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("before its schema is registered: status %d (%s), want 422", r.Status, r.Detail)
	}
	schema, err := os.ReadFile("testdata/Router.avsc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.codec.Client().CreateSchema(t.Context(), s.topic+"-herald.events.Router", sr.Schema{Schema: string(schema), Type: sr.TypeAvro}); err != nil {
		t.Fatalf("register Router: %v", err)
	}

	// A refused attempt produces nothing, so retrying until accepted is safe.
	var r reply
	for deadline := time.Now().Add(waitFor); ; {
		if r = s.post("/v1/events", acmeKey, router); r.Status == http.StatusAccepted || time.Now().After(deadline) {
			break
		}
	}
	if r.Status != http.StatusAccepted {
		t.Fatalf("after its schema is registered: status %d (%s %v), want 202", r.Status, r.Detail, r.Errors)
	}
	rec := s.next(1)[0]
	if string(rec.Key) != "acme/acc-9" {
		t.Errorf("key %q, want acme/acc-9", rec.Key)
	}
	got := s.decode(rec)
	want := map[string]any{"eventId": r.EventID, "tenantId": "acme", "entityType": "Router", "entityId": "rt-1", "operation": "CREATE", "old": nil}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("%s = %#v, want %#v", f, got[f], w)
		}
	}
	if wantNew := map[string]any{"id": "rt-1", "model": "X1", "online": true, "firmware": nil}; !reflect.DeepEqual(got["new"], wantNew) {
		t.Errorf("new = %#v, want %#v", got["new"], wantNew)
	}
}

func TestMetricsCountEventsByOutcome(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	for range 2 {
		if r := s.post("/v1/events", acmeKey, balanceUpdate); r.Status != http.StatusAccepted {
			t.Fatalf("status %d, want 202", r.Status)
		}
	}
	if r := s.post("/v1/events", acmeKey, `{"entityType":"Nope","entityId":"x","operation":"CREATE","new":{}}`); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d, want 422", r.Status)
	}
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`herald_ingest_events_total\{[^}]*outcome="accepted"[^}]*\} 2\n`),
		regexp.MustCompile(`herald_ingest_events_total\{[^}]*outcome="refused"[^}]*\} 1\n`),
		regexp.MustCompile(`go_goroutines \d+`),
	} {
		if !want.Match(body) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
