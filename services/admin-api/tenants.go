package adminapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/httpapi"
)

// NewAPIKey returns a fresh random API key.
func NewAPIKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "hk_" + hex.EncodeToString(b)
}

// SeedTenant makes sure tenant id exists and that key (a new one when
// empty) is one of its API keys with every scope, and returns the key. It
// is how the devstack and tests set up a tenant; storing a key again keeps
// the tenant's other keys valid.
func (a *API) SeedTenant(ctx context.Context, id, name, key string) (string, error) {
	store := a.base.Config
	if err := store.WaitCaughtUp(ctx); err != nil {
		return "", err
	}
	if key == "" {
		key = NewAPIKey()
	}
	tenant, err := configstore.NewDocument(configstore.OperatorTenant, configstore.KindTenant, id, configstore.Tenant{Name: name})
	if err != nil {
		return "", err
	}
	if _, err := store.Put(ctx, tenant, 0); err != nil {
		return "", err
	}
	hash := configstore.HashAPIKey(key)
	apiKey, err := configstore.NewDocument(id, configstore.KindAPIKey, "key_"+hash[:12], configstore.APIKey{
		Name: "seed", Hash: hash, Prefix: key[:min(len(key), 7)],
		Scopes: []string{httpapi.ScopeEventsWrite, httpapi.ScopeConfigRead, httpapi.ScopeConfigWrite},
	})
	if err != nil {
		return "", err
	}
	_, err = store.Put(ctx, apiKey, 0)
	return key, err
}
