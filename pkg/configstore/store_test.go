package configstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
)

// newTopic starts an in-memory broker and creates a compacted config topic
// with one partition on it.
func newTopic(t *testing.T) (seeds []string, topic string) {
	t.Helper()
	seeds, topic = kafkatest.Fake(t), "herald.config"
	kafkatest.Compacted(t, seeds, topic, 1)
	return seeds, topic
}

// openStore opens a Store on topic and follows it until the test ends.
// hooks are registered before the store starts following.
func openStore(t *testing.T, seeds []string, topic string, hooks ...func(configstore.Document, bool)) *configstore.Store {
	t.Helper()
	s, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(seeds...)}, topic, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		s.OnApply(h)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.Close()
	})
	return s
}

// ctxTimeout bounds a wait on the view, so a view that never catches up
// fails the test rather than hanging it.
func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func doc(t *testing.T, tenant, kind, id string, spec any) configstore.Document {
	t.Helper()
	d, err := configstore.NewDocument(tenant, kind, id, spec)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func put(t *testing.T, s *configstore.Store, d configstore.Document) configstore.Document {
	t.Helper()
	stored, err := s.Put(ctxTimeout(t), d, 0)
	if err != nil {
		t.Fatalf("Put %s: %v", d.Key(), err)
	}
	return stored
}

func rule(name string) configstore.Rule {
	return configstore.Rule{Name: name, On: configstore.RuleOn{EntityTypes: []string{"Balance"}}, When: "true"}
}

func TestPutIsReadableAsSoonAsItReturns(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)

	writes := []struct {
		doc         configstore.Document
		wantVersion int64
	}{
		{doc(t, configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"}), 1},
		{doc(t, "acme", configstore.KindRule, "low", rule("low v1")), 1},
		{doc(t, "acme", configstore.KindRule, "low", rule("low v2")), 2},
		{doc(t, "acme", configstore.KindRule, "low", rule("low v3")), 3},
		{doc(t, "acme", configstore.KindDestination, "hook", configstore.Destination{Type: "webhook", Name: "hook"}), 1},
		{doc(t, "globex", configstore.KindRule, "low", rule("globex low")), 1},
	}
	for _, w := range writes {
		stored, err := s.Put(ctxTimeout(t), w.doc, 0)
		if err != nil {
			t.Fatalf("Put %s: %v", w.doc.Key(), err)
		}
		if stored.Version != w.wantVersion {
			t.Errorf("Put %s stored version %d, want %d", w.doc.Key(), stored.Version, w.wantVersion)
		}
		got, ok := s.Get(w.doc.Tenant, w.doc.Kind, w.doc.ID)
		if !ok {
			t.Fatalf("Get %s right after Put: not found", w.doc.Key())
		}
		if got.Version != w.wantVersion || string(got.Spec) != string(w.doc.Spec) {
			t.Errorf("Get %s = version %d spec %s, want version %d spec %s", w.doc.Key(), got.Version, got.Spec, w.wantVersion, w.doc.Spec)
		}
	}
	if got := configstore.Spec[configstore.Rule](mustGet(t, s, "acme", configstore.KindRule, "low")).Name; got != "low v3" {
		t.Errorf("rule low is %q, want the last write", got)
	}
}

func TestPutRefusesASpecItCannotRead(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	tests := []struct {
		name string
		doc  configstore.Document
	}{
		{"unknown kind", configstore.Document{Tenant: "acme", Kind: "widget", ID: "w", Spec: json.RawMessage(`{}`)}},
		{"spec of the wrong shape", configstore.Document{Tenant: "acme", Kind: configstore.KindRule, ID: "r", Spec: json.RawMessage(`{"when": 42}`)}},
		{"spec not JSON", configstore.Document{Tenant: "acme", Kind: configstore.KindTenant, ID: "t", Spec: json.RawMessage(`{`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Put(ctxTimeout(t), tt.doc, 0); err == nil {
				t.Fatal("Put succeeded")
			}
			if _, ok := s.Get(tt.doc.Tenant, tt.doc.Kind, tt.doc.ID); ok {
				t.Error("the refused document is in the view")
			}
		})
	}
}

func mustGet(t *testing.T, s *configstore.Store, tenant, kind, id string) configstore.Document {
	t.Helper()
	d, ok := s.Get(tenant, kind, id)
	if !ok {
		t.Fatalf("%s not found", configstore.Key(tenant, kind, id))
	}
	return d
}

func TestStoreOpenedLaterCatchesUp(t *testing.T) {
	seeds, topic := newTopic(t)
	writer := openStore(t, seeds, topic)
	put(t, writer, doc(t, configstore.OperatorTenant, configstore.KindTenant, "acme", configstore.Tenant{Name: "Acme"}))
	for i := range 3 {
		put(t, writer, doc(t, "acme", configstore.KindRule, "low", rule(fmt.Sprintf("low v%d", i+1))))
	}
	put(t, writer, doc(t, "acme", configstore.KindRule, "gone", rule("gone")))
	put(t, writer, doc(t, "acme", configstore.KindRule, "kept", rule("kept")))
	if err := writer.Delete(ctxTimeout(t), "acme", configstore.KindRule, "gone"); err != nil {
		t.Fatal(err)
	}

	reader := openStore(t, seeds, topic)
	if reader.CaughtUp() {
		t.Error("CaughtUp before WaitCaughtUp")
	}
	if err := reader.WaitCaughtUp(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if !reader.CaughtUp() {
		t.Error("CaughtUp is false after WaitCaughtUp returned")
	}

	var ids []string
	for _, d := range reader.List("acme", configstore.KindRule) {
		ids = append(ids, d.ID)
	}
	if want := []string{"kept", "low"}; !slices.Equal(ids, want) {
		t.Errorf("rules of acme = %v, want %v", ids, want)
	}
	low := mustGet(t, reader, "acme", configstore.KindRule, "low")
	if name := configstore.Spec[configstore.Rule](low).Name; low.Version != 3 || name != "low v3" {
		t.Errorf("rule low = version %d %q, want version 3 \"low v3\"", low.Version, name)
	}
	if _, ok := reader.Get("acme", configstore.KindRule, "gone"); ok {
		t.Error("the deleted rule is in the late view")
	}
	mustGet(t, reader, configstore.OperatorTenant, configstore.KindTenant, "acme")
}

func TestWaitCaughtUpOnAnEmptyTopic(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	if err := s.WaitCaughtUp(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if !s.CaughtUp() {
		t.Error("CaughtUp is false after WaitCaughtUp returned")
	}
}

func TestDelete(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	put(t, s, doc(t, "acme", configstore.KindRule, "low", rule("low")))
	put(t, s, doc(t, "acme", configstore.KindRule, "high", rule("high")))

	tests := []struct {
		id      string
		wantErr error
	}{
		{"low", nil},
		{"low", configstore.ErrNotFound}, // already deleted
		{"never-written", configstore.ErrNotFound},
	}
	for _, tt := range tests {
		err := s.Delete(ctxTimeout(t), "acme", configstore.KindRule, tt.id)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Delete %s = %v, want %v", tt.id, err, tt.wantErr)
		}
		if _, ok := s.Get("acme", configstore.KindRule, tt.id); ok {
			t.Errorf("Get %s after Delete: still found", tt.id)
		}
	}
	if got := s.List("acme", configstore.KindRule); len(got) != 1 || got[0].ID != "high" {
		t.Errorf("List after delete = %v, want only high", got)
	}

	// A key written again after its deletion goes on above the deletion
	// (version 1 written, version 2 deleted): an If-Match tag of its former
	// life never matches it.
	if d := put(t, s, doc(t, "acme", configstore.KindRule, "low", rule("low again"))); d.Version != 3 {
		t.Errorf("rewritten rule has version %d, want 3", d.Version)
	}
}

func TestPutChecksTheExpectedVersion(t *testing.T) {
	tests := []struct {
		name    string
		writes  int // Puts of the document before the checked one
		expect  int64
		wantErr error
	}{
		{"zero skips the check on a new document", 0, 0, nil},
		{"zero skips the check on a stored document", 2, 0, nil},
		{"matching version", 2, 2, nil},
		{"stale version", 2, 1, configstore.ErrVersionConflict},
		{"version from the future", 2, 3, configstore.ErrVersionConflict},
		{"any version of a missing document", 0, 1, configstore.ErrVersionConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seeds, topic := newTopic(t)
			s := openStore(t, seeds, topic)
			for range tt.writes {
				put(t, s, doc(t, "acme", configstore.KindRule, "low", rule("before")))
			}
			_, err := s.Put(ctxTimeout(t), doc(t, "acme", configstore.KindRule, "low", rule("checked")), tt.expect)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Put(expect %d) = %v, want %v", tt.expect, err, tt.wantErr)
			}
			got, ok := s.Get("acme", configstore.KindRule, "low")
			switch {
			case tt.wantErr == nil && (!ok || got.Version != int64(tt.writes)+1):
				t.Errorf("after a successful Put the view has %v (found %v), want version %d", got.Version, ok, tt.writes+1)
			case tt.wantErr != nil && ok && (got.Version != int64(tt.writes) || configstore.Spec[configstore.Rule](got).Name != "before"):
				t.Errorf("a refused Put changed the stored document: version %d", got.Version)
			}
		})
	}
}

// applied is one call of an OnApply hook.
type applied struct {
	Key     string
	Version int64
	Deleted bool
}

func TestOnApplySeesEveryChangeInOrder(t *testing.T) {
	seeds, topic := newTopic(t)
	seen := make(chan applied, 100)
	s := openStore(t, seeds, topic, func(d configstore.Document, deleted bool) {
		seen <- applied{d.Key(), d.Version, deleted}
	})

	put(t, s, doc(t, "acme", configstore.KindRule, "a", rule("a")))
	put(t, s, doc(t, "acme", configstore.KindRule, "a", rule("a2")))
	put(t, s, doc(t, "acme", configstore.KindRule, "b", rule("b")))
	if err := s.Delete(ctxTimeout(t), "acme", configstore.KindRule, "a"); err != nil {
		t.Fatal(err)
	}
	put(t, s, doc(t, "acme", configstore.KindRule, "b", rule("b2")))
	// A deletion is a version of its own; the tombstone that follows it
	// changes nothing more.
	want := []applied{
		{"acme/rule/a", 1, false},
		{"acme/rule/a", 2, false},
		{"acme/rule/b", 1, false},
		{"acme/rule/a", 3, true},
		{"acme/rule/b", 2, false},
	}

	// Hooks run on the following goroutine, possibly after Delete returned.
	var got []applied
	timeout := time.After(5 * time.Second)
	for len(got) < len(want) {
		select {
		case a := <-seen:
			got = append(got, a)
		case <-timeout:
			t.Fatalf("hooks saw only %v, want %v", got, want)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("hooks saw\n%v\nwant\n%v", got, want)
	}
}

func TestAPIKeyByHashFollowsTheKeyDocument(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	key := func(id, secret string) configstore.Document {
		return doc(t, "acme", configstore.KindAPIKey, id, configstore.APIKey{
			Name: id, Hash: configstore.HashAPIKey(secret), Prefix: secret[:4], Scopes: []string{"events:write"},
		})
	}
	ctx := ctxTimeout(t)

	steps := []struct {
		name      string
		do        func() error
		wantFound map[string]string // secret → id of the key document it finds; "" for none
	}{
		{
			name:      "a stored key is found by its hash",
			do:        func() error { _, err := s.Put(ctx, key("k1", "hk_first"), 0); return err },
			wantFound: map[string]string{"hk_first": "k1", "hk_other": ""},
		},
		{
			name:      "a second key leaves the first alone",
			do:        func() error { _, err := s.Put(ctx, key("k2", "hk_second"), 0); return err },
			wantFound: map[string]string{"hk_first": "k1", "hk_second": "k2"},
		},
		{
			name:      "rotating a key forgets its old hash",
			do:        func() error { _, err := s.Put(ctx, key("k1", "hk_rotated"), 0); return err },
			wantFound: map[string]string{"hk_first": "", "hk_rotated": "k1", "hk_second": "k2"},
		},
		{
			name:      "deleting a key forgets it",
			do:        func() error { return s.Delete(ctx, "acme", configstore.KindAPIKey, "k1") },
			wantFound: map[string]string{"hk_first": "", "hk_rotated": "", "hk_second": "k2"},
		},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for secret, wantID := range step.wantFound {
			d, ok := s.APIKeyByHash(configstore.HashAPIKey(secret))
			if ok != (wantID != "") || d.ID != wantID {
				t.Errorf("%s: APIKeyByHash(%s) = %q found %v, want %q", step.name, secret, d.ID, ok, wantID)
			}
		}
	}
}

func TestMalformedRecordsAreSkipped(t *testing.T) {
	seeds, topic := newTopic(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bad := []*kgo.Record{
		{Topic: topic, Key: []byte("acme/rule/garbage"), Value: []byte("not JSON")},
		{Topic: topic, Key: []byte("acme/widget/w"), Value: []byte(`{"kind": "widget", "tenant": "acme", "id": "w", "version": 1, "spec": {}}`)},
		{Topic: topic, Key: []byte("acme/rule/shape"), Value: []byte(`{"kind": "rule", "tenant": "acme", "id": "shape", "version": 1, "spec": {"on": "Balance"}}`)},
		{Topic: topic, Key: []byte("not-a-config-key")}, // tombstone
	}
	if err := cl.ProduceSync(t.Context(), bad...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	following := openStore(t, seeds, topic)
	put(t, following, doc(t, "acme", configstore.KindRule, "good", rule("good")))
	put(t, following, doc(t, "acme", configstore.KindRule, "later", rule("later")))
	// The last record of the topic is malformed too: catching up must not
	// wait for a record that is never applied.
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Key: []byte("acme/rule/last"), Value: []byte("{")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	late := openStore(t, seeds, topic)
	for _, s := range []*configstore.Store{following, late} {
		if err := s.WaitCaughtUp(ctxTimeout(t)); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range map[string]*configstore.Store{"following view": following, "late view": late} {
		var ids []string
		for _, d := range s.List("acme", configstore.KindRule) {
			ids = append(ids, d.ID)
		}
		if want := []string{"good", "later"}; !slices.Equal(ids, want) {
			t.Errorf("%s: rules = %v, want %v", name, ids, want)
		}
		if _, ok := s.Get("acme", "widget", "w"); ok {
			t.Errorf("%s: holds a document of an unknown kind", name)
		}
	}
}

// TestLookupsAllocateNothing pins what every delivery attempt relies on:
// reading a document, or the destination a notification names, from the
// view makes no garbage, however long the names.
func TestLookupsAllocateNothing(t *testing.T) {
	seeds, topic := newTopic(t)
	s := openStore(t, seeds, topic)
	tenant, id := "tenant-with-a-rather-long-name-0001", "destination-with-a-rather-long-name-0001"
	put(t, s, doc(t, tenant, configstore.KindDestination, id,
		configstore.Destination{Type: "webhook", Name: "hook", Webhook: &configstore.WebhookDestination{URL: "https://example.com/hook"}}))
	if _, ok := s.Get(tenant, configstore.KindDestination, id); !ok {
		t.Fatal("the destination is not in the view")
	}
	absent := id + "-x"
	lookups := map[string]func(){
		"Get":         func() { s.Get(tenant, configstore.KindDestination, id) },
		"Get, absent": func() { s.Get(tenant, configstore.KindDestination, absent) },
		"Destination": func() { s.Destination(tenant, id) },
	}
	for name, f := range lookups {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations, want none", name, n)
		}
	}
}
