package schemas

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/avro"
)

//go:embed testdata/records
var testRecords embed.FS

// envelopeStrings are the envelope fields that are required strings.
var envelopeStrings = []string{"eventId", "tenantId", "entityType", "entityId"}

// envelopeOptional are the envelope fields that are nullable strings,
// null by default.
var envelopeOptional = []string{"accountId", "deviceId", "correlationId"}

func TestEverySchemaFileParses(t *testing.T) {
	var n int
	for _, root := range []string{"events", "notification", "deliveryattempt"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			n++
			if filepath.Ext(p) != ".avsc" {
				t.Errorf("%s: schema files are v<N>.avsc; this one is not embedded", p)
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if _, err := avro.Parse(string(b)); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Fatal("no schema files found")
	}
}

func TestRecordsAreNamedForTheirFolder(t *testing.T) {
	dirs, err := os.ReadDir("events")
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, d := range dirs {
		want = append(want, EventRecordName(d.Name()))
	}
	for _, r := range Events() {
		got = append(got, r.Name)
		for i, v := range r.Versions {
			if name := fullName(parse(t, v).Root()); name != r.Name {
				t.Errorf("%s v%d: record is named %s", r.Name, i+1, name)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Events() = %v, want one per folder of events/: %v", got, want)
	}
	n := Notification()
	if name := fullName(parse(t, n.Latest()).Root()); name != NotificationRecord || n.Name != NotificationRecord {
		t.Errorf("Notification() is %s, its schema names %s; want %s", n.Name, name, NotificationRecord)
	}
	d := DeliveryAttempt()
	if name := fullName(parse(t, d.Latest()).Root()); name != DeliveryAttemptRecord || d.Name != DeliveryAttemptRecord {
		t.Errorf("DeliveryAttempt() is %s, its schema names %s; want %s", d.Name, name, DeliveryAttemptRecord)
	}
}

func TestEventRecordsFollowTheEnvelope(t *testing.T) {
	for _, r := range Events() {
		entityType := strings.TrimPrefix(r.Name, EventNamespace+".")
		for i, v := range r.Versions {
			if err := envelopeErr(parse(t, v), entityType); err != nil {
				t.Errorf("%s v%d: %v", r.Name, i+1, err)
			}
		}
	}
}

// TestEnvelopeCheck shows that envelopeErr, which the test above relies on,
// catches each way a record can stray from the envelope.
func TestEnvelopeCheck(t *testing.T) {
	tests := []struct {
		fixture string
		wantErr string // in the error; "" for none
	}{
		{"valid", ""},
		{"old_not_nullable", "old"},
		{"new_without_default", "new"},
		{"missing_correlation_id", "correlationId"},
		{"occurred_at_is_a_string", "occurredAt"},
		{"operation_lacks_delete", "operation"},
		{"wrong_namespace", "herald.events.Meter"},
		{"account_id_required", "accountId"},
		{"old_and_new_differ", "new"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "envelope", tt.fixture+".avsc"))
			if err != nil {
				t.Fatal(err)
			}
			err = envelopeErr(parse(t, string(b)), "Meter")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("valid envelope refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("envelopeErr = %v, want an error about %s", err, tt.wantErr)
			}
		})
	}
}

func TestEveryVersionIsFullyTransitivelyCompatible(t *testing.T) {
	for _, r := range append(Events(), Notification(), DeliveryAttempt()) {
		if err := fullTransitiveErr(t, r.Versions); err != nil {
			t.Errorf("%s: %v", r.Name, err)
		}
	}
}

// TestFullTransitiveCheck shows that fullTransitiveErr, which the test above
// relies on, refuses what FULL_TRANSITIVE refuses.
func TestFullTransitiveCheck(t *testing.T) {
	tests := []struct {
		fixture string
		wantErr string // in the error; "" for none
	}{
		{"adds_field_with_default", ""},
		{"adds_field_without_default", "v2 cannot read v1"},
		{"removes_field_without_default", "v1 cannot read v2"},
		{"retypes_a_removed_field", "v3 cannot read v1"}, // each step alone is compatible
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			dir := filepath.Join("testdata", "compat", tt.fixture)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var versions []string
			for i := range entries {
				b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("v%d.avsc", i+1)))
				if err != nil {
					t.Fatal(err)
				}
				versions = append(versions, string(b))
			}
			err = fullTransitiveErr(t, versions)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("compatible versions refused: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("fullTransitiveErr = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestVersionsAreInNumericOrder(t *testing.T) {
	embedded := files
	files = testRecords
	t.Cleanup(func() { files = embedded })

	r, err := readRecord("testdata/records/Counter", "herald.events.Counter")
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, v := range r.Versions {
		docs = append(docs, parse(t, v).Root().Doc)
	}
	want := []string{"version 1", "version 2", "version 3", "version 4", "version 5",
		"version 6", "version 7", "version 8", "version 9", "version 10"}
	if !slices.Equal(docs, want) {
		t.Errorf("Versions hold %v, want %v", docs, want)
	}
	if doc := parse(t, r.Latest()).Root().Doc; doc != "version 10" {
		t.Errorf("Latest is %q, want version 10", doc)
	}

	for dir, want := range map[string]string{
		"testdata/records/Gap":      "v2 missing",
		"testdata/records/Misnamed": "latest.avsc",
	} {
		if _, err := readRecord(dir, "herald.events.X"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readRecord(%s) = %v, want an error about %s", dir, err, want)
		}
	}
}

func parse(t *testing.T, text string) *avro.Schema {
	t.Helper()
	s, err := avro.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fullTransitiveErr reports the first pair of versions where one cannot read
// data written with the other.
func fullTransitiveErr(t *testing.T, versions []string) error {
	t.Helper()
	parsed := make([]*avro.Schema, len(versions))
	for i, v := range versions {
		parsed[i] = parse(t, v)
	}
	for i := range parsed {
		for j := range i {
			if err := avro.CheckCompatibility(parsed[j], parsed[i]); err != nil {
				return fmt.Errorf("v%d cannot read v%d (backward): %w", i+1, j+1, err)
			}
			if err := avro.CheckCompatibility(parsed[i], parsed[j]); err != nil {
				return fmt.Errorf("v%d cannot read v%d (forward): %w", j+1, i+1, err)
			}
		}
	}
	return nil
}

// envelopeErr reports the first way s differs from the envelope every
// entity-change event shares.
func envelopeErr(s *avro.Schema, entityType string) error {
	root := s.Root()
	if want := EventRecordName(entityType); root.Type != "record" || fullName(root) != want {
		return fmt.Errorf("record is %s %s, want record %s", root.Type, fullName(root), want)
	}
	fields := map[string]*avro.SchemaField{}
	for i := range root.Fields {
		fields[root.Fields[i].Name] = &root.Fields[i]
	}
	field := func(name string) (*avro.SchemaField, error) {
		f, ok := fields[name]
		if !ok {
			return nil, fmt.Errorf("no field %s", name)
		}
		return f, nil
	}

	for _, name := range envelopeStrings {
		f, err := field(name)
		if err != nil {
			return err
		}
		if f.Type.Type != "string" {
			return fmt.Errorf("%s is %s, want string", name, f.Type.Type)
		}
	}
	op, err := field("operation")
	if err != nil {
		return err
	}
	if op.Type.Type != "enum" || !slices.Equal(op.Type.Symbols, []string{"CREATE", "UPDATE", "DELETE"}) {
		return fmt.Errorf("operation is %s %v, want enum of CREATE, UPDATE, DELETE", op.Type.Type, op.Type.Symbols)
	}
	at, err := field("occurredAt")
	if err != nil {
		return err
	}
	if at.Type.Type != "long" || at.Type.LogicalType != "timestamp-millis" {
		return fmt.Errorf("occurredAt is %s %s, want long timestamp-millis", at.Type.Type, at.Type.LogicalType)
	}
	for _, name := range envelopeOptional {
		f, err := field(name)
		if err != nil {
			return err
		}
		if err := nullByDefault(f); err != nil {
			return err
		}
		if f.Type.Branches[1].Type != "string" {
			return fmt.Errorf("%s is null or %s, want null or string", name, f.Type.Branches[1].Type)
		}
	}

	var images [2]string // the record old and new name
	for i, name := range []string{"old", "new"} {
		f, err := field(name)
		if err != nil {
			return err
		}
		if err := nullByDefault(f); err != nil {
			return err
		}
		img := &f.Type.Branches[1]
		images[i] = img.Type // a reference names the record
		if img.Type == "record" {
			images[i] = fullName(img)
		}
		if !strings.Contains(images[i], ".") {
			images[i] = namespace(fullName(root)) + "." + images[i]
		}
	}
	if images[0] != images[1] {
		return fmt.Errorf("old is a %s but new is a %s", images[0], images[1])
	}
	return nil
}

// nullByDefault checks that f is a union of null and one other type, null
// first and by default.
func nullByDefault(f *avro.SchemaField) error {
	if f.Type.Type != "union" || len(f.Type.Branches) != 2 || f.Type.Branches[0].Type != "null" {
		return fmt.Errorf("%s is %s, want a union of null and one type, null first", f.Name, f.Type.Type)
	}
	if !f.HasDefault || f.Default != nil {
		return errors.New(f.Name + " does not default to null")
	}
	return nil
}

func fullName(n *avro.SchemaNode) string {
	if n.Namespace == "" || strings.Contains(n.Name, ".") {
		return n.Name
	}
	return n.Namespace + "." + n.Name
}

func namespace(fullName string) string {
	i := strings.LastIndexByte(fullName, '.')
	if i < 0 {
		return ""
	}
	return fullName[:i]
}
