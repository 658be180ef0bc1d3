package emailsender_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/envconfig"
	emailsender "github.com/heraldhq/herald/services/email-sender"
)

// TestConfigNamesTheVariable: the defaults are valid, and each bad value
// is refused with the variable to fix.
func TestConfigNamesTheVariable(t *testing.T) {
	var base emailsender.Config
	if err := envconfig.Defaults(&base); err != nil {
		t.Fatal(err)
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		variable string
		edit     func(*emailsender.Config)
	}{
		{"HERALD_EMAIL_GROUP", func(c *emailsender.Config) { c.Group = "" }},
		{"HERALD_EMAIL_TIMEOUT", func(c *emailsender.Config) { c.Timeout = 0 }},
		{"HERALD_EMAIL_POOL_SIZE", func(c *emailsender.Config) { c.PoolSize = 0 }},
		{"HERALD_EMAIL_IDLE_TIMEOUT", func(c *emailsender.Config) { c.IdleTimeout = -1 }},
		{"HERALD_EMAIL_SESSION_MESSAGES", func(c *emailsender.Config) { c.SessionMessages = -1 }},
		{"HERALD_EMAIL_PORTS", func(c *emailsender.Config) { c.Ports = "25,smtp" }},
		{"HERALD_EMAIL_PORTS", func(c *emailsender.Config) { c.Ports = "" }},
		{"HERALD_WEBHOOK_ALLOW_NETWORKS", func(c *emailsender.Config) { c.Egress.AllowNetworks = []string{"10.0.0.0/33"} }},
		{"HERALD_RETRY_SCHEDULE", func(c *emailsender.Config) { c.Delivery.RetrySchedule = "soon" }},
	} {
		cfg := base
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.variable+":") {
			t.Errorf("%s: got %v", c.variable, err)
		}
	}
}
