package webhook_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/webhook"
)

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signed(t *testing.T, secrets []string, id string, at time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := webhook.Sign(secrets, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, id)
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	return h
}

// TestSignAndVerifyAgreeWithTheReferenceLibrary pins Herald's signatures to
// the specification's reference implementation both ways: what Herald
// signs the reference verifies, what the reference signs Herald verifies,
// and neither accepts a changed byte.
func TestSignAndVerifyAgreeWithTheReferenceLibrary(t *testing.T) {
	sec := newSecret(t)
	if !strings.HasPrefix(sec, webhook.SecretPrefix) || len(sec) != len(webhook.SecretPrefix)+44 {
		t.Fatalf("secret %q is not whsec_ and 32 bytes of base64", sec)
	}
	ref, err := standardwebhooks.NewWebhook(sec)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"id":"n-1","name":"UnitAllowanceThreshold","state":"low"}`)
	h := signed(t, []string{sec}, "n-1", now, body)
	if err := ref.Verify(body, h); err != nil {
		t.Fatalf("the reference refuses Herald's signature: %v", err)
	}
	refSig, err := ref.Sign("n-2", now, body)
	if err != nil {
		t.Fatal(err)
	}
	rh := http.Header{}
	rh.Set(webhook.HeaderID, "n-2")
	rh.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	rh.Set(webhook.HeaderSignature, refSig)
	if err := webhook.Verify(sec, rh, body, now, 5*time.Minute); err != nil {
		t.Fatalf("Herald refuses the reference's signature: %v", err)
	}
	for i := range body {
		changed := bytes.Clone(body)
		changed[i] ^= 0x20
		if webhook.Verify(sec, h, changed, now, 5*time.Minute) == nil || ref.Verify(changed, h) == nil {
			t.Fatalf("a body with byte %d changed verifies", i)
		}
	}
	other := h.Clone()
	other.Set(webhook.HeaderID, "n-3")
	if webhook.Verify(sec, other, body, now, 5*time.Minute) == nil {
		t.Error("a signature verifies for another message id")
	}
	if webhook.Verify(newSecret(t), h, body, now, 5*time.Minute) == nil {
		t.Error("another secret verifies")
	}
	if err := webhook.Verify(sec, h, body, now.Add(10*time.Minute), 5*time.Minute); err == nil {
		t.Error("a message older than the tolerance verifies")
	}
	if _, err := webhook.Sign([]string{"not-a-secret"}, "n", now, body); err == nil {
		t.Error("signing with a secret that is not whsec_ and base64 succeeds")
	}
}

// TestRotateKeepsThePreviousSecretLiveForTheGrace pins rotation: after it
// both the new and the previous secret sign until the grace ends, and any
// older secret ends at once.
func TestRotateKeepsThePreviousSecretLiveForTheGrace(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	first, second, third := newSecret(t), newSecret(t), newSecret(t)
	secrets := []configstore.SigningSecret{{Secret: first, CreatedAt: t0}}
	secrets, exp := webhook.Rotate(secrets, second, t0.Add(time.Hour), 24*time.Hour)
	if !exp.Equal(t0.Add(25 * time.Hour)) {
		t.Errorf("previous expires at %s, want %s", exp, t0.Add(25*time.Hour))
	}
	wh := configstore.WebhookDestination{Secrets: secrets}
	if live := wh.LiveSecrets(t0.Add(2 * time.Hour)); len(live) != 2 || live[0] != second || live[1] != first {
		t.Errorf("live during the grace = %d secrets, want the new then the previous", len(live))
	}
	if live := wh.LiveSecrets(t0.Add(26 * time.Hour)); len(live) != 1 || live[0] != second {
		t.Errorf("live after the grace = %d secrets, want the new one only", len(live))
	}
	secrets, _ = webhook.Rotate(secrets, third, t0.Add(2*time.Hour), time.Hour)
	if len(secrets) != 2 || secrets[0].Secret != second || secrets[1].Secret != third {
		t.Fatalf("after a second rotation: %d secrets, want the previous and the new", len(secrets))
	}
	if !secrets[0].ExpiresAt.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("previous expires at %s, want the new grace's end", secrets[0].ExpiresAt)
	}
	h := signed(t, (&configstore.WebhookDestination{Secrets: secrets}).LiveSecrets(t0.Add(2*time.Hour)), "n", t0.Add(2*time.Hour), []byte("{}"))
	for _, s := range []string{second, third} {
		if err := webhook.Verify(s, h, []byte("{}"), t0.Add(2*time.Hour), time.Minute); err != nil {
			t.Errorf("a live secret does not verify: %v", err)
		}
	}
	if webhook.Verify(first, h, []byte("{}"), t0.Add(2*time.Hour), time.Minute) == nil {
		t.Error("the secret rotated out twice still verifies")
	}
}
