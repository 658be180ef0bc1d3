// Package peertest gives integration tests the real peers written in other
// languages that `make test` installs: Confluent's Python client, with its
// Avro serializer and schema registry client, and moto's server, the AWS
// emulator, from PyPI into the virtual environment .cache/venv (`make
// peers`, from deploy/peers/requirements.txt). A test runs its own script
// with that interpreter, against the broker that kafkatest names, or
// starts moto with StartMoto, makes an event bus whose events land in an
// SQS queue with QueuedBus, and reads them back with Receive.
//
// The interpreter's path comes from HERALD_TEST_PYTHON. Without it a test
// is skipped with a message, except when CI is set: there a missing peer
// fails the test, so a test against a peer can never pass by not running.
package peertest

import (
	"os"
	"testing"
)

// PythonEnv names the variable that holds the test peers' Python
// interpreter.
const PythonEnv = "HERALD_TEST_PYTHON"

// Python returns the path of the Python interpreter that has the test
// peers installed.
func Python(t testing.TB) string {
	t.Helper()
	p := os.Getenv(PythonEnv)
	if p == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: tests against the Python peers need the interpreter that `make peers` installs", PythonEnv)
		}
		t.Skipf("peer test: set %s to .cache/venv/bin/python (as `make test` does, after `make peers`) to run it", PythonEnv)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v; `make peers` installs it", PythonEnv, p, err)
	}
	return p
}
