package configstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Secrets at rest
//
// The spec of a document whose kind holds secrets (webhook signing
// secrets, SMTP passwords, AWS external ids) is sealed before it is
// written: AES-256-GCM under the operator's key, with the record key
// ({tenant}/{kind}/{id}) as additional data, so a sealed spec cannot be
// moved to another document. In the topic the spec is then a JSON string,
//
//	"hsk1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>"
//
// and the rest of the document (kind, tenant, id, version) stays readable.
// The key id is derived from the key itself, so a Keyring holding the
// current key and the retired ones opens every record, whichever key
// sealed it: rotating the key needs no rewrite of the topic. A spec that is
// a JSON object is read as it is, so records written before sealing was
// configured stay readable too.

// sealPrefix starts a sealed spec; the digit is the format's version.
const sealPrefix = "hsk1:"

// KeySize is the length of a secret key: AES-256.
const KeySize = 32

// ErrNoKey is returned for a sealed record whose key this process lacks.
var ErrNoKey = errors.New("sealed with a key this process does not have")

// holdsSecrets reports whether documents of kind are sealed.
func holdsSecrets(kind string) bool {
	switch kind {
	case KindDestination, KindSMTPProfile, KindSubscriptionSettings:
		return true
	}
	return false
}

// KeyConfig is the operator's secret key and the retired keys that still
// open older records.
type KeyConfig struct {
	// Key seals every document written from now on: 32 bytes, base64 or
	// hex.
	Key string `env:"SECRET_KEY"`
	// OldKeys open records sealed before a rotation.
	OldKeys []string `env:"SECRET_KEYS_OLD" envSeparator:","`
}

// Validate checks that each key given is 32 bytes in base64 or hex.
func (c KeyConfig) Validate() error {
	_, err := c.Keyring()
	return err
}

// Keyring returns the keyring the configuration describes; nil when no key
// is set.
func (c KeyConfig) Keyring() (*Keyring, error) {
	if c.Key == "" {
		if len(c.OldKeys) > 0 {
			return nil, errors.New("HERALD_SECRET_KEY: required when HERALD_SECRET_KEYS_OLD is set")
		}
		return nil, nil
	}
	cur, err := ParseKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("HERALD_SECRET_KEY: %w", err)
	}
	var old [][]byte
	for i, s := range c.OldKeys {
		k, err := ParseKey(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("HERALD_SECRET_KEYS_OLD: key %d: %w", i+1, err)
		}
		old = append(old, k)
	}
	return NewKeyring(cur, old...)
}

// ParseKey reads a 32-byte key written as hex or as base64 (standard or
// URL alphabet, padded or not).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("not %d bytes in base64 or hex (make one with `openssl rand -base64 32`)", KeySize)
}

// KeyID names a key without revealing it: the first 8 bytes of a SHA-256
// over it, in hex.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("herald secret key\x00"), key...))
	return hex.EncodeToString(sum[:8])
}

// Keyring seals with its current key and opens with any of its keys.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD // by key id
}

// NewKeyring returns a keyring that seals with current and also opens
// what old sealed.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	k := &Keyring{current: KeyID(current), aeads: map[string]cipher.AEAD{}}
	for _, key := range append([][]byte{current}, old...) {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("secret key: %w", err)
		}
		k.aeads[KeyID(key)] = aead
	}
	return k, nil
}

// CurrentKeyID returns the id of the key that seals.
func (k *Keyring) CurrentKeyID() string { return k.current }

// Seal encrypts plain under the current key, bound to aad.
func (k *Keyring) Seal(plain, aad []byte) (string, error) {
	aead := k.aeads[k.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := aead.Seal(nonce, nonce, plain, aad)
	return sealPrefix + k.current + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts what Seal returned, with the key it names. A nil keyring
// opens nothing.
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	id, body, ok := strings.Cut(strings.TrimPrefix(sealed, sealPrefix), ":")
	if !ok || !strings.HasPrefix(sealed, sealPrefix) {
		return nil, errors.New("not a sealed value")
	}
	var aead cipher.AEAD
	if k != nil {
		aead = k.aeads[id]
	}
	if aead == nil {
		return nil, fmt.Errorf("key id %s: %w (set it in HERALD_SECRET_KEY or HERALD_SECRET_KEYS_OLD)", id, ErrNoKey)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed value is cut short or not base64")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("key id %s: the sealed value does not authenticate", id)
	}
	return plain, nil
}

// sealSpec returns doc's spec as the topic stores it: sealed when the kind
// holds secrets and the keyring is set.
func sealSpec(k *Keyring, doc Document) (json.RawMessage, error) {
	if k == nil || !holdsSecrets(doc.Kind) {
		return doc.Spec, nil
	}
	s, err := k.Seal(doc.Spec, []byte(doc.Key()))
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// openSpec returns a stored spec in the clear. A spec that is a JSON
// string is sealed; anything else is taken as it is.
func openSpec(k *Keyring, key string, spec json.RawMessage) (json.RawMessage, error) {
	if len(spec) == 0 || spec[0] != '"' {
		return spec, nil
	}
	var s string
	if err := json.Unmarshal(spec, &s); err != nil {
		return nil, err
	}
	return k.Open(s, []byte(key))
}
