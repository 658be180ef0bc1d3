// Package webhook is Herald's side of the Standard Webhooks specification:
// signing secrets ("whsec_" and base64) and their rotation with two live
// secrets, the webhook-signature header a sender writes, and its
// verification as a receiver does it. The admin API makes and rotates
// secrets, the webhook sender signs, and tests and receivers verify.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/configstore"
)

// SecretPrefix starts every signing secret; the rest is base64.
const SecretPrefix = "whsec_"

// Headers of a signed message.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrBadSecret is a secret that is not "whsec_" and base64.
var ErrBadSecret = errors.New("a signing secret is not whsec_ and base64")

// NewSecret returns a fresh secret: "whsec_" and 32 random bytes in base64.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Rotate returns secrets with secret as the new current one, made at now.
// The previous current secret stays live until now+grace (or until it
// expires, if sooner), so receivers can move over; any older one ends. It
// also returns when the previous secret expires.
func Rotate(secrets []configstore.SigningSecret, secret string, now time.Time, grace time.Duration) ([]configstore.SigningSecret, time.Time) {
	expires := now.Add(grace)
	var kept []configstore.SigningSecret
	if n := len(secrets); n > 0 {
		prev := secrets[n-1]
		if prev.ExpiresAt == nil || prev.ExpiresAt.After(expires) {
			prev.ExpiresAt = &expires
		}
		kept = append(kept, prev)
	}
	return append(kept, configstore.SigningSecret{Secret: secret, CreatedAt: now}), expires
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, separated by
// spaces.
func Sign(secrets []string, id string, at time.Time, body []byte) (string, error) {
	ts := strconv.FormatInt(at.Unix(), 10)
	out := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := key(s)
		if err != nil {
			return "", err
		}
		out = append(out, "v1,"+base64.StdEncoding.EncodeToString(mac(key, id, ts, body)))
	}
	return strings.Join(out, " "), nil
}

// Verify checks a received message as a receiver does: its timestamp is
// within tolerance of now, and one of its v1 signatures is the secret's.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	key, err := key(secret)
	if err != nil {
		return err
	}
	id, ts := h.Get(HeaderID), h.Get(HeaderTimestamp)
	if id == "" || ts == "" || h.Get(HeaderSignature) == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp is %s away from now, over the tolerance of %s", d.Round(time.Second), tolerance)
	}
	want := mac(key, id, ts, body)
	for _, sig := range strings.Fields(h.Get(HeaderSignature)) {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no signature matches the secret")
}

func key(secret string) ([]byte, error) {
	if !strings.HasPrefix(secret, SecretPrefix) {
		return nil, ErrBadSecret
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, ErrBadSecret
	}
	return k, nil
}

func mac(key []byte, id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
