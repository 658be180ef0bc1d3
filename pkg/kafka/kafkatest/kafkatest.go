// Package kafkatest gives integration tests the real Kafka broker that
// `make test` starts, and names that keep tests apart on it.
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
