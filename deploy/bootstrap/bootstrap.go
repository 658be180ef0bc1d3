// Package bootstrap prepares a fresh Herald installation, as the one-shot
// container of the compose stack does: the "topics" step creates every
// topic with the code the services use when HERALD_KAFKA_CREATE_TOPICS is
// on, so a stack whose services may not create topics gets the same
// layout; the "tenant" step waits for the admin API to be ready and
// creates a tenant with a chosen API key through the operator routes, as
// an operator would. Both steps can run again: what exists is kept.
package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/telemetry"
)

// Steps the bootstrap knows.
const (
	StepTopics = "topics"
	StepTenant = "tenant"
)

// Config is the bootstrap's configuration.
type Config struct {
	// Kafka is the cluster and the topic layout, as the services read it;
	// its CreateTopics is ignored: the topics step always creates.
	Kafka     kafka.Config `envPrefix:"KAFKA_"`
	Telemetry telemetry.Config
	// Steps are run in order: topics, tenant, or both.
	Steps []string `env:"BOOTSTRAP_STEPS" envDefault:"topics,tenant" envSeparator:","`
	// AdminURL is the admin API the tenant is created through.
	AdminURL string `env:"BOOTSTRAP_ADMIN_URL" envDefault:"http://127.0.0.1:8080"`
	// AdminToken is the admin API's operator token.
	AdminToken string `env:"ADMIN_TOKEN"`
	// Tenant and TenantName are the tenant's id and name.
	Tenant     string `env:"BOOTSTRAP_TENANT" envDefault:"demo"`
	TenantName string `env:"BOOTSTRAP_TENANT_NAME" envDefault:"Demo"`
	// APIKey is the tenant's API key; generated and printed when empty.
	APIKey string `env:"BOOTSTRAP_API_KEY"`
	// Wait bounds the wait for the broker and the admin API.
	Wait time.Duration `env:"BOOTSTRAP_WAIT" envDefault:"2m"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Steps) == 0 {
		return errors.New("HERALD_BOOTSTRAP_STEPS: name topics, tenant or both")
	}
	for _, s := range c.Steps {
		if s != StepTopics && s != StepTenant {
			return fmt.Errorf("HERALD_BOOTSTRAP_STEPS: %q is not topics or tenant", s)
		}
	}
	if c.Wait <= 0 {
		return errors.New("HERALD_BOOTSTRAP_WAIT: must be positive")
	}
	if slices.Contains(c.Steps, StepTopics) {
		if err := c.Kafka.Validate(); err != nil {
			return err
		}
	}
	if slices.Contains(c.Steps, StepTenant) {
		u, err := url.Parse(c.AdminURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("HERALD_BOOTSTRAP_ADMIN_URL: %q is not an http(s) URL", c.AdminURL)
		}
		if c.AdminToken == "" {
			return errors.New("HERALD_ADMIN_TOKEN: required for the tenant step: the admin API's operator token")
		}
		if c.Tenant == "" {
			return errors.New("HERALD_BOOTSTRAP_TENANT: required for the tenant step")
		}
	}
	return nil
}

// Run runs the configured steps in order.
func Run(ctx context.Context, c Config) error {
	log, err := telemetry.Logger(c.Telemetry, os.Stderr)
	if err != nil {
		return err
	}
	log = log.With("service", "bootstrap")
	ctx, cancel := context.WithTimeout(ctx, c.Wait)
	defer cancel()
	for _, step := range c.Steps {
		switch step {
		case StepTopics:
			err = createTopics(ctx, c.Kafka, log)
		case StepTenant:
			err = createTenant(ctx, c, log)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
	}
	return nil
}

// createTopics creates the topics the services use.
func createTopics(ctx context.Context, c kafka.Config, log *slog.Logger) error {
	opts, err := kafka.ClientOptions(c, "bootstrap", log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	// The broker may still be starting: wait until it answers.
	if err := poll(ctx, func() error { return cl.Ping(ctx) }); err != nil {
		return fmt.Errorf("reach the brokers %s: %w", strings.Join(c.Brokers, ","), err)
	}
	if err := kafka.EnsureTopics(ctx, cl, c); err != nil {
		return err
	}
	log.Info("topics ready", "prefix", c.TopicPrefix, "partitions", c.Partitions)
	return nil
}

// createTenant waits for the admin API to be ready, then creates the
// tenant with the API key, or adds the key to the tenant if it exists.
func createTenant(ctx context.Context, c Config, log *slog.Logger) error {
	api := operator{base: strings.TrimSuffix(c.AdminURL, "/"), token: c.AdminToken, hc: &http.Client{Timeout: 10 * time.Second}}
	if err := poll(ctx, func() error {
		status, _, err := api.call(ctx, http.MethodGet, "/readyz", nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /readyz: %d", status)
		}
		return err
	}); err != nil {
		return fmt.Errorf("wait for the admin API at %s: %w", c.AdminURL, err)
	}
	key := map[string]any{"name": "bootstrap"}
	if c.APIKey != "" {
		key["key"] = c.APIKey
	}
	status, body, err := api.call(ctx, http.MethodPost, "/v1/tenants", map[string]any{"id": c.Tenant, "name": c.TenantName, "apiKey": key})
	switch {
	case err != nil:
		return err
	case status == http.StatusCreated:
		var created struct {
			APIKey struct {
				Key string `json:"key"`
			} `json:"apiKey"`
		}
		if err := json.Unmarshal(body, &created); err != nil {
			return fmt.Errorf("POST /v1/tenants: %w", err)
		}
		log.Info("tenant created", "tenant", c.Tenant, "api_key", created.APIKey.Key)
		return nil
	case status != http.StatusConflict:
		return fmt.Errorf("POST /v1/tenants: %d %s", status, body)
	case c.APIKey == "":
		log.Info("tenant exists", "tenant", c.Tenant)
		return nil
	}
	key["scopes"] = httpapi.Scopes
	status, body, err = api.call(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(c.Tenant)+"/api-keys", key)
	switch {
	case err != nil:
		return err
	case status == http.StatusCreated, status == http.StatusConflict:
		// 409: the key is stored already, by an earlier run.
		log.Info("tenant exists, API key stored", "tenant", c.Tenant)
		return nil
	}
	return fmt.Errorf("POST /v1/tenants/%s/api-keys: %d %s", c.Tenant, status, body)
}

// operator calls the admin API with the operator token.
type operator struct {
	base, token string
	hc          *http.Client
}

// call sends body, if any, as JSON and returns the answer's status and body.
func (o operator) call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, raw, err
}

// poll calls f until it succeeds or ctx ends, and returns f's last error
// if ctx ends first.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
