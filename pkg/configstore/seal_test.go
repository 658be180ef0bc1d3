package configstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, configstore.KeySize) }

func keyring(t *testing.T, current []byte, old ...[]byte) *configstore.Keyring {
	t.Helper()
	k, err := configstore.NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openSealed opens a Store with keys on topic and follows it until the
// test ends; Run's result goes to runErr.
func openSealed(t *testing.T, seeds []string, topic string, keys *configstore.Keyring) (*configstore.Store, <-chan error) {
	t.Helper()
	s, err := configstore.Open([]kgo.Opt{kgo.SeedBrokers(seeds...)}, topic, slog.New(slog.NewTextHandler(t.Output(), nil)), configstore.WithKeyring(keys))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		s.Close()
	})
	return s, done
}

// rawValues reads every record of topic as it is stored, up to the end
// offsets the topic has now.
func rawValues(t *testing.T, seeds []string, topic string) [][]byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxTimeout(t)
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	left := 0
	ends.Each(func(o kadm.ListedOffset) { left += int(o.Offset) })
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d records short", topic, left)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r.Value); left-- })
	}
	return out
}

const hookSecret = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"

func hookDestination() configstore.Destination {
	return configstore.Destination{Type: "webhook", Name: "hook", Webhook: &configstore.WebhookDestination{
		URL: "https://hooks.example.com/", Secrets: []configstore.SigningSecret{{Secret: hookSecret}},
	}}
}

func TestSecretsAreSealedInTheTopicAndOpenInTheView(t *testing.T) {
	seeds, topic := newTopic(t)
	keys := keyring(t, testKey(1))
	writer, _ := openSealed(t, seeds, topic, keys)
	put(t, writer, doc(t, "acme", configstore.KindDestination, "dst_1", hookDestination()))
	put(t, writer, doc(t, "acme", configstore.KindSMTPProfile, "smtp_1", configstore.SMTPProfile{Name: "main", Password: "hunter2-smtp"}))
	put(t, writer, doc(t, "acme", configstore.KindRule, "rul_1", rule("not secret")))

	values := rawValues(t, seeds, topic)
	if len(values) != 3 {
		t.Fatalf("read %d records, want 3", len(values))
	}
	for _, v := range values {
		for _, secret := range []string{hookSecret, "hunter2-smtp", "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWFr"} {
			if bytes.Contains(v, []byte(secret)) {
				t.Errorf("record holds %q in the clear: %s", secret, v)
			}
		}
	}
	if !bytes.Contains(values[2], []byte("not secret")) {
		t.Errorf("a rule, which holds no secret, is sealed too: %s", values[2])
	}
	if !bytes.Contains(values[0], []byte(`"kind":"destination"`)) || !bytes.Contains(values[0], []byte("hsk1:"+keys.CurrentKeyID()+":")) {
		t.Errorf("a sealed record should keep its envelope and name its key: %s", values[0])
	}

	reader, _ := openSealed(t, seeds, topic, keys)
	if err := reader.WaitCaughtUp(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	d := configstore.Spec[configstore.Destination](mustGet(t, reader, "acme", configstore.KindDestination, "dst_1"))
	if got := d.Webhook.Secrets[0].Secret; got != hookSecret {
		t.Errorf("reader sees secret %q, want %q", got, hookSecret)
	}
	if got := configstore.Spec[configstore.SMTPProfile](mustGet(t, reader, "acme", configstore.KindSMTPProfile, "smtp_1")).Password; got != "hunter2-smtp" {
		t.Errorf("reader sees password %q", got)
	}
}

func TestRecordsSealedWithARetiredKeyStayReadable(t *testing.T) {
	seeds, topic := newTopic(t)
	oldKey, newKey := testKey(1), testKey(2)
	before, _ := openSealed(t, seeds, topic, keyring(t, oldKey))
	put(t, before, doc(t, "acme", configstore.KindDestination, "dst_old", hookDestination()))

	// The operator rotates: the new key seals, the old one only opens.
	rotated, _ := openSealed(t, seeds, topic, keyring(t, newKey, oldKey))
	put(t, rotated, doc(t, "acme", configstore.KindDestination, "dst_new", hookDestination()))
	for _, id := range []string{"dst_old", "dst_new"} {
		d := configstore.Spec[configstore.Destination](mustGet(t, rotated, "acme", configstore.KindDestination, id))
		if d.Webhook.Secrets[0].Secret != hookSecret {
			t.Errorf("%s: secret %q after rotation", id, d.Webhook.Secrets[0].Secret)
		}
	}
	values := rawValues(t, seeds, topic)
	if !bytes.Contains(values[1], []byte(configstore.KeyID(newKey))) {
		t.Errorf("the record written after rotation is not sealed with the new key: %s", values[1])
	}

	// A process that was not given the new key stops rather than run
	// without the document.
	_, done := openSealed(t, seeds, topic, keyring(t, oldKey))
	select {
	case err := <-done:
		if !errors.Is(err, configstore.ErrNoKey) || !strings.Contains(err.Error(), configstore.KeyID(newKey)) {
			t.Errorf("Run without the new key: %v, want ErrNoKey naming key %s", err, configstore.KeyID(newKey))
		}
	case <-ctxTimeout(t).Done():
		t.Fatal("Run without the new key kept going")
	}
}

func TestRecordsWrittenBeforeSealingStayReadable(t *testing.T) {
	seeds, topic := newTopic(t)
	plain := openStore(t, seeds, topic)
	put(t, plain, doc(t, "acme", configstore.KindDestination, "dst_1", hookDestination()))

	sealed, _ := openSealed(t, seeds, topic, keyring(t, testKey(3)))
	if err := sealed.WaitCaughtUp(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	d := configstore.Spec[configstore.Destination](mustGet(t, sealed, "acme", configstore.KindDestination, "dst_1"))
	if d.Webhook.Secrets[0].Secret != hookSecret {
		t.Errorf("secret %q", d.Webhook.Secrets[0].Secret)
	}
}

func TestSealIsBoundToItsDocumentAndKey(t *testing.T) {
	k := keyring(t, testKey(4))
	sealed, err := k.Seal([]byte(`{"password":"x"}`), []byte("acme/smtp-profile/smtp_1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(sealed, []byte("acme/smtp-profile/smtp_1")); err != nil || string(got) != `{"password":"x"}` {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(sealed, []byte("globex/smtp-profile/smtp_1")); err == nil {
		t.Error("a sealed spec opened under another document's key")
	}
	other := keyring(t, testKey(5))
	if _, err := other.Open(sealed, []byte("acme/smtp-profile/smtp_1")); !errors.Is(err, configstore.ErrNoKey) {
		t.Errorf("Open with another keyring: %v, want ErrNoKey", err)
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := k.Open(tampered, []byte("acme/smtp-profile/smtp_1")); err == nil {
		t.Error("a tampered sealed value opened")
	}
	again, _ := k.Seal([]byte(`{"password":"x"}`), []byte("acme/smtp-profile/smtp_1"))
	if again == sealed {
		t.Error("two seals of the same spec are equal: the nonce is not fresh")
	}
}

func TestKeyConfig(t *testing.T) {
	key := testKey(7)
	tests := []struct {
		name    string
		cfg     configstore.KeyConfig
		wantErr string
		wantNil bool
	}{
		{name: "none", cfg: configstore.KeyConfig{}, wantNil: true},
		{name: "base64", cfg: configstore.KeyConfig{Key: base64.StdEncoding.EncodeToString(key)}},
		{name: "base64 url unpadded", cfg: configstore.KeyConfig{Key: base64.RawURLEncoding.EncodeToString(key)}},
		{name: "hex", cfg: configstore.KeyConfig{Key: hex.EncodeToString(key)}},
		{name: "old keys", cfg: configstore.KeyConfig{Key: hex.EncodeToString(key), OldKeys: []string{base64.StdEncoding.EncodeToString(testKey(8)), " " + hex.EncodeToString(testKey(9))}}},
		{name: "short", cfg: configstore.KeyConfig{Key: base64.StdEncoding.EncodeToString(key[:16])}, wantErr: "HERALD_SECRET_KEY: not 32 bytes"},
		{name: "not base64", cfg: configstore.KeyConfig{Key: "correct horse battery staple"}, wantErr: "HERALD_SECRET_KEY"},
		{name: "bad old key", cfg: configstore.KeyConfig{Key: hex.EncodeToString(key), OldKeys: []string{"x"}}, wantErr: "HERALD_SECRET_KEYS_OLD: key 1"},
		{name: "old keys alone", cfg: configstore.KeyConfig{OldKeys: []string{hex.EncodeToString(key)}}, wantErr: "HERALD_SECRET_KEY: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.cfg.Keyring()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Keyring() error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (k == nil) != tt.wantNil {
				t.Fatalf("Keyring() = %v, want nil %v", k, tt.wantNil)
			}
			if k != nil && k.CurrentKeyID() != configstore.KeyID(key) {
				t.Errorf("current key id %s, want %s", k.CurrentKeyID(), configstore.KeyID(key))
			}
		})
	}
}
