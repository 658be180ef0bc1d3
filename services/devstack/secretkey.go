package devstack

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/heraldhq/herald/pkg/configstore"
)

// secretKey returns the key that seals secrets in the devstack's config
// topic: the one configured, else one made for this run, or with a data
// folder one made once and kept there (secret-key, mode 0600), so that a
// restart still opens what the last run sealed. A devstack key protects
// nothing real: production sets HERALD_SECRET_KEY.
func secretKey(configured, dataDir string) (string, error) {
	if configured != "" {
		if _, err := configstore.ParseKey(configured); err != nil {
			return "", fmt.Errorf("HERALD_SECRET_KEY: %w", err)
		}
		return configured, nil
	}
	if dataDir == "" {
		return newSecretKey()
	}
	path := filepath.Join(dataDir, "secret-key")
	b, err := os.ReadFile(path)
	if err == nil {
		key := strings.TrimSpace(string(b))
		if _, err := configstore.ParseKey(key); err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	key, err := newSecretKey()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", err
	}
	return key, nil
}

func newSecretKey() (string, error) {
	b := make([]byte, configstore.KeySize)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
