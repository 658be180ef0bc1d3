// Package kafkatest gives integration tests the real Kafka broker that
// `make test` starts, and names that keep tests apart on it; and unit
// tests an in-memory broker of their own.
//
// The broker's address comes from HERALD_TEST_KAFKA_BROKERS. Without it a
// test is skipped with a message, except when CI is set: there a missing
// broker fails the test, so an integration test can never pass by not
// running.
package kafkatest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BrokersEnv names the variable that holds the test broker's address.
const BrokersEnv = "HERALD_TEST_KAFKA_BROKERS"

// Brokers returns the test broker's seed addresses.
func Brokers(t testing.TB) []string {
	t.Helper()
	v := os.Getenv(BrokersEnv)
	if v == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: integration tests need the broker that `make test` starts", BrokersEnv)
		}
		t.Skipf("integration test: set %s (as `make test` does) to run it against a real broker", BrokersEnv)
	}
	return strings.Split(v, ",")
}

// Prefix returns a topic prefix unique to this test run, such as
// "it-3f2a9c1e.", so that tests never see each other's topics or groups.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "it-" + hex.EncodeToString(b) + "."
}

// Fake starts an in-memory broker (kfake) that lives as long as the test
// and returns its address, for unit tests and fault injection.
func Fake(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// Compacted creates a compacted topic of partitions partitions on the
// broker at seeds.
func Compacted(t testing.TB, seeds []string, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	compact := "compact"
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), partitions, 1, map[string]*string{"cleanup.policy": &compact}, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}
