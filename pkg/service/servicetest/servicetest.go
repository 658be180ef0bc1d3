// Package servicetest runs Herald services inside a test: on an in-memory
// Kafka cluster (kfake) and schema registry (srfake) of the test's own, or
// on the real broker that integration tests use.
//
// Fakes and Run start a service's components in the test's process. A
// Stack is a test's own topics, registry and configuration view on the
// real broker; Put and Read write its configuration and read its topics.
// Build and StartProcess run a service's command as a process of its own,
// for tests that kill it.
package servicetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/service"
)

// Fakes starts a kfake cluster and an srfake registry that live as long as
// the test, and returns a service configuration pointing at them: topics
// of the given partitions under the prefix "t.", warnings logged to the
// test's output.
func Fakes(t testing.TB, partitions int32) service.Config {
	t.Helper()
	seeds := kafkatest.Fake(t)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	return service.Config{
		Kafka: kafka.Config{
			Brokers: seeds, TopicPrefix: "t.",
			Partitions: partitions, ReplicationFactor: -1, CreateTopics: true,
		},
		// Tests run side by side under the race detector on small
		// machines: give the registry time rather than fail on a slow answer.
		Registry: service.RegistryConfig{URL: reg.URL(), RegisterSchemas: true, LatestTTL: time.Second, Timeout: time.Minute},
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// Run runs c's background work until the test ends, then stops and closes
// it, failing the test if Run returned an error. It returns once c's
// configuration view has caught up.
func Run(t testing.TB, c service.Component) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", c.Base().Name, err)
		}
		c.Close()
	})
	wait, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.Base().Config.WaitCaughtUp(wait); err != nil {
		t.Fatalf("%s: config view: %v", c.Base().Name, err)
	}
}
