package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/heraldhq/herald/pkg/httpapi"
)

// Names of the demo tenant's keys the devstack adds.
const (
	configuredKeyName = "devstack"
	generatedKeyName  = "devstack (generated)"
)

// newOperatorToken returns a fresh operator token for a devstack run.
func newOperatorToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "hop_" + hex.EncodeToString(b)
}

// operator calls the admin API's operator routes, as a user would.
type operator struct {
	base  string // http://host:port
	token string
	hc    *http.Client
}

// newOperator returns an operator of the API served on ln.
func newOperator(ln net.Listener, token string) operator {
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return operator{base: "http://" + net.JoinHostPort(host, port), token: token, hc: &http.Client{}}
}

// call sends body as JSON and decodes a 2xx answer into out; it returns the
// status, and an error for any answer but 2xx, 404 and 409.
func (o operator) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
	}
	switch {
	case resp.StatusCode/100 == 2:
		if out != nil {
			return resp.StatusCode, json.Unmarshal(raw, out)
		}
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusConflict:
	default:
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, nil
}

// issuedKey is the part of a new API key's answer the devstack reads.
type issuedKey struct {
	Key string `json:"key"`
}

// seedDemo makes sure the demo tenant exists, through the admin API's
// operator routes, and returns an API key of it with every scope: key
// when given, which a restart on a data folder finds already there, else a
// fresh one that replaces the one the previous run generated.
func seedDemo(ctx context.Context, o operator, key string) (string, error) {
	first := map[string]any{"name": configuredKeyName}
	if key != "" {
		first["key"] = key
	} else {
		first["name"] = generatedKeyName
	}
	tenantPath := "/v1/tenants/" + DemoTenant
	status, err := o.call(ctx, http.MethodGet, tenantPath, nil, nil)
	if err != nil {
		return "", err
	}
	if status == http.StatusNotFound {
		body := map[string]any{"id": DemoTenant, "name": "Demo", "apiKey": first}
		var created struct {
			APIKey issuedKey `json:"apiKey"`
		}
		if _, err := o.call(ctx, http.MethodPost, "/v1/tenants", body, &created); err != nil {
			return "", err
		}
		return created.APIKey.Key, nil
	}
	if key == "" {
		if err := revokeGenerated(ctx, o, tenantPath+"/api-keys"); err != nil {
			return "", err
		}
	}
	first["scopes"] = httpapi.Scopes
	var issued issuedKey
	status, err = o.call(ctx, http.MethodPost, tenantPath+"/api-keys", first, &issued)
	switch {
	case err != nil:
		return "", err
	case status == http.StatusConflict:
		// Stored by an earlier run on the same data folder.
		return key, nil
	case status == http.StatusNotFound:
		return "", fmt.Errorf("tenant %s went away while being seeded", DemoTenant)
	}
	return issued.Key, nil
}

// revokeGenerated revokes the keys earlier runs generated.
func revokeGenerated(ctx context.Context, o operator, keysPath string) error {
	var page struct {
		Items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	var stale []string
	for path := keysPath + "?limit=1000"; path != ""; {
		page.Items, page.NextCursor = nil, ""
		if _, err := o.call(ctx, http.MethodGet, path, nil, &page); err != nil {
			return err
		}
		for _, k := range page.Items {
			if k.Name == generatedKeyName {
				stale = append(stale, k.ID)
			}
		}
		path = ""
		if page.NextCursor != "" {
			path = keysPath + "?limit=1000&cursor=" + url.QueryEscape(page.NextCursor)
		}
	}
	for _, id := range stale {
		if _, err := o.call(ctx, http.MethodDelete, keysPath+"/"+id, nil, nil); err != nil {
			return err
		}
	}
	return nil
}
