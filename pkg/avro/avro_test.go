package avro

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/schemas"
)

// balanceSubject is where Balance events are registered on the events topic
// (TopicRecordNameStrategy).
const balanceSubject = "herald.events-herald.events.Balance"

// usageV1 and usageV2 are two versions of one record: v2 adds a field with
// a default, the evolution FULL_TRANSITIVE allows.
const (
	usageV1 = `{"type": "record", "name": "Usage", "namespace": "herald.events", "fields": [
		{"name": "entityId", "type": "string"},
		{"name": "used", "type": "double"}
	]}`
	usageV2 = `{"type": "record", "name": "Usage", "namespace": "herald.events", "fields": [
		{"name": "entityId", "type": "string"},
		{"name": "used", "type": "double"},
		{"name": "unit", "type": "string", "default": "MB"}
	]}`
)

// newRegistry returns a Registry in front of a fresh in-memory schema
// registry.
func newRegistry(t *testing.T, latestTTL time.Duration) *Registry {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return NewRegistry(cl, latestTTL)
}

// register registers versions under subject and fails the test on error.
func register(t *testing.T, r *Registry, subject string, versions ...string) {
	t.Helper()
	if err := r.Register(t.Context(), subject, versions, sr.CompatFullTransitive); err != nil {
		t.Fatal(err)
	}
}

// eventVersions returns the committed versions of a built-in event record.
func eventVersions(t testing.TB, name string) []string {
	t.Helper()
	for _, rec := range schemas.Events() {
		if rec.Name == name {
			return rec.Versions
		}
	}
	t.Fatalf("no built-in event record %s", name)
	return nil
}

// jsonObject parses a JSON object the way an HTTP front door would: numbers
// as float64, timestamps as RFC 3339 strings.
func jsonObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncodeThenDecodeGivesBackTheEvent(t *testing.T) {
	r := newRegistry(t, time.Minute)
	register(t, r, balanceSubject, eventVersions(t, "herald.events.Balance")...)
	s, err := r.Latest(t.Context(), balanceSubject)
	if err != nil {
		t.Fatal(err)
	}
	occurred := time.Date(2025, 3, 1, 10, 0, 0, 123e6, time.UTC)
	envelope := func(op string, old, new any) map[string]any {
		return map[string]any{
			"eventId": "01JNQ7Z8X0", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
			"operation": op, "occurredAt": occurred,
			"accountId": "acc-1", "deviceId": nil, "correlationId": nil,
			"old": old, "new": new,
		}
	}
	// The newest Balance version's fields absent from the input take their
	// defaults: no kind, no tiers.
	balance := func(remaining float64, planID any) map[string]any {
		return map[string]any{
			"id": "bal-1", "accountId": "acc-1", "unit": "MB",
			"total": 1000.0, "used": 1000 - remaining, "remaining": remaining, "planId": planID,
			"kind": nil, "tiers": map[string]any{},
		}
	}

	tests := []struct {
		name string
		in   string
		want map[string]any
	}{
		{
			name: "create has no old image and absent optional fields become null",
			in: `{"eventId": "01JNQ7Z8X0", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
				"operation": "CREATE", "occurredAt": "2025-03-01T10:00:00.123Z", "accountId": "acc-1",
				"new": {"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000, "used": 0, "remaining": 1000}}`,
			want: envelope("CREATE", nil, balance(1000, nil)),
		},
		{
			name: "update carries both images",
			in: `{"eventId": "01JNQ7Z8X0", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
				"operation": "UPDATE", "occurredAt": "2025-03-01T10:00:00.123Z", "accountId": "acc-1",
				"old": {"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000, "used": 750, "remaining": 250, "planId": "plan-9"},
				"new": {"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000, "used": 850.5, "remaining": 149.5, "planId": "plan-9"}}`,
			want: envelope("UPDATE", balance(250, "plan-9"), balance(149.5, "plan-9")),
		},
		{
			name: "timestamp in another zone is the same instant",
			in: `{"eventId": "01JNQ7Z8X0", "tenantId": "acme", "entityType": "Balance", "entityId": "bal-1",
				"operation": "DELETE", "occurredAt": "2025-03-01T11:00:00.123+01:00", "accountId": "acc-1",
				"old": {"id": "bal-1", "accountId": "acc-1", "unit": "MB", "total": 1000, "used": 1000, "remaining": 0}}`,
			want: envelope("DELETE", balance(0, nil), nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.Encode(jsonObject(t, tt.in))
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			var got any
			writer, err := r.Decode(t.Context(), b, &got)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if writer != s.Schema {
				t.Errorf("decode used another writer schema than the one encoded with (id %d)", s.ID)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestRecordsDecodeWithTheirWriterVersion(t *testing.T) {
	const subject = "herald.events-herald.events.Usage"
	r := newRegistry(t, 0) // no caching of the latest version
	ctx := t.Context()

	register(t, r, subject, usageV1)
	v1, err := r.Latest(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	register(t, r, subject, usageV1, usageV2)
	v2, err := r.Latest(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	if v1.ID == v2.ID {
		t.Fatalf("v1 and v2 share schema id %d", v1.ID)
	}

	tests := []struct {
		name   string
		writer Schema
		in     map[string]any
		want   map[string]any
	}{
		{"v1 record has no unit", v1,
			map[string]any{"entityId": "u-1", "used": 12.5},
			map[string]any{"entityId": "u-1", "used": 12.5}},
		{"v2 record shows the added field", v2,
			map[string]any{"entityId": "u-2", "used": 3.0, "unit": "SMS"},
			map[string]any{"entityId": "u-2", "used": 3.0, "unit": "SMS"}},
		{"v2 record written without the field carries its default", v2,
			map[string]any{"entityId": "u-3", "used": 7.0},
			map[string]any{"entityId": "u-3", "used": 7.0, "unit": "MB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.writer.Encode(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var got any
			if _, err := r.Decode(ctx, b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLatestPicksUpANewVersionOnceItsTTLPasses(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration
		wantNewID bool
	}{
		{"within the TTL the cached version is kept", time.Hour, false},
		{"after the TTL the new version is seen", time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const subject = "herald.events-herald.events.Usage"
			ctx := t.Context()
			r := newRegistry(t, tt.ttl)
			register(t, r, subject, usageV1)
			first, err := r.Latest(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			register(t, r, subject, usageV1, usageV2)

			var got Schema
			for deadline := time.Now().Add(2 * time.Second); ; {
				if got, err = r.Latest(ctx, subject); err != nil {
					t.Fatal(err)
				}
				if got.ID != first.ID || !tt.wantNewID || time.Now().After(deadline) {
					break
				}
			}
			if gotNew := got.ID != first.ID; gotNew != tt.wantNewID {
				t.Errorf("Latest returned id %d after registering v2 (v1 is %d); want a new id: %v", got.ID, first.ID, tt.wantNewID)
			}
		})
	}
}

func TestDecodeRefusesMalformedRecords(t *testing.T) {
	const subject = "herald.events-herald.events.Usage"
	r := newRegistry(t, time.Minute)
	register(t, r, subject, usageV1)
	s, err := r.Latest(t.Context(), subject)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := s.Encode(map[string]any{"entityId": "u-1", "used": 1.5})
	if err != nil {
		t.Fatal(err)
	}
	body := valid[5:]

	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header shorter than five bytes", []byte{0, 0, 0, 1}},
		{"magic byte is not zero", append([]byte{1}, valid[1:]...)},
		{"schema id unknown to the registry", append([]byte{0, 0, 0, 0x30, 0x39}, body...)},
		{"body cut short", valid[:len(valid)-1]},
		{"bytes left after the record", append(bytes.Clone(valid), 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			_, err := r.Decode(t.Context(), tt.b, &v)
			var we *WireError
			if !errors.As(err, &we) {
				t.Fatalf("Decode error = %v (%T), want a *WireError", err, err)
			}
		})
	}
}

func TestLatestOfUnknownSubjectIsErrSubjectNotFound(t *testing.T) {
	r := newRegistry(t, time.Minute)
	// A subject can exist in the registry with a compatibility level set and
	// no schema yet; it has no latest version either.
	if res := r.Client().SetCompatibility(t.Context(), sr.SetCompatibility{Level: sr.CompatFull}, "configured-only"); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	for _, subject := range []string{"herald.events-herald.events.Nothing", "configured-only"} {
		t.Run(subject, func(t *testing.T) {
			_, err := r.Latest(t.Context(), subject)
			if !errors.Is(err, ErrSubjectNotFound) {
				t.Errorf("Latest(%q) error = %v, want ErrSubjectNotFound", subject, err)
			}
		})
	}
}

func TestRegisterIsIdempotentAndSetsCompatibility(t *testing.T) {
	tests := []struct {
		name     string
		versions []string
		compat   sr.CompatibilityLevel
	}{
		{"one version", []string{usageV1}, sr.CompatFullTransitive},
		{"two versions", []string{usageV1, usageV2}, sr.CompatFullTransitive},
		{"another level", []string{usageV1, usageV2}, sr.CompatBackwardTransitive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const subject = "herald.events-herald.events.Usage"
			ctx := t.Context()
			r := newRegistry(t, 0)
			cl := r.Client()

			var ids [2][]int
			for run := range ids {
				if err := r.Register(ctx, subject, tt.versions, tt.compat); err != nil {
					t.Fatalf("run %d: %v", run+1, err)
				}
				stored, err := cl.Schemas(ctx, subject)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range stored {
					ids[run] = append(ids[run], s.ID)
				}
			}
			if len(ids[1]) != len(tt.versions) {
				t.Errorf("subject holds %d versions after registering %d twice", len(ids[1]), len(tt.versions))
			}
			if !reflect.DeepEqual(ids[0], ids[1]) {
				t.Errorf("ids changed on the second run: %v then %v", ids[0], ids[1])
			}
			got := cl.Compatibility(ctx, subject)[0]
			if got.Err != nil || got.Level != tt.compat {
				t.Errorf("compatibility of %s = %v (err %v), want %v", subject, got.Level, got.Err, tt.compat)
			}
		})
	}
}
