package peertest

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// motoScript creates buses and reads their queues with boto3.
//
//go:embed moto.py
var motoScript string

// Moto is moto's server, the AWS emulator, running for one test on a
// loopback port. Point Herald's AWS SDK at URL with AWS_ENDPOINT_URL;
// moto takes any credentials, and its account is 123456789012.
type Moto struct {
	// URL is the server's endpoint, http://127.0.0.1:<port>.
	URL    string
	python string
}

// StartMoto runs `python -m moto.server` on a free loopback port until the
// test ends, and waits up to 30s for it to listen.
func StartMoto(t testing.TB) *Moto {
	t.Helper()
	python := Python(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	logs, err := os.CreateTemp(t.TempDir(), "moto.*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("moto's log:\n%s", b[max(0, len(b)-4096):])
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("moto exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("moto did not listen within 30s")
		}
	}
	return &Moto{URL: "http://" + addr, python: python}
}

// run runs moto.py's command in region and returns what it printed.
func (m *Moto) run(t testing.TB, ctx context.Context, region string, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, m.python, append([]string{"-c", motoScript, m.URL, region}, args...)...)
	// boto3 reads none of the machine's or the test's AWS settings (the
	// script names its endpoint, region and credentials), no shared files
	// and no instance metadata.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_EC2_METADATA_DISABLED=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("moto %s: %v\n%s", args[0], err, stderr.Bytes())
	}
	return out
}

// Bus is an event bus on moto whose events a rule sends to an SQS queue,
// where the test reads them back.
type Bus struct {
	// ARN is the bus's ARN, to put events to.
	ARN string
	// QueueURL is the queue the bus's rule sends every event to.
	QueueURL string
	region   string
	m        *Moto
}

// QueuedBus creates, in region, the event bus named name, an SQS queue
// and a rule that sends every event on the bus to the queue.
func (m *Moto) QueuedBus(t testing.TB, region, name string) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out struct{ ARN, Queue string }
	if err := json.Unmarshal(m.run(t, ctx, region, "bus", name), &out); err != nil {
		t.Fatalf("moto bus %s: %v", name, err)
	}
	return &Bus{ARN: out.ARN, QueueURL: out.Queue, region: region, m: m}
}

// BusEvent is an event as EventBridge hands it to a target.
type BusEvent struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Time       time.Time       `json:"time"`
	Region     string          `json:"region"`
	Detail     json.RawMessage `json:"detail"`
}

// Receive reads the bus's queue until n events have arrived, deleting
// each, and fails the test if they have not within d.
func (b *Bus) Receive(t testing.TB, n int, d time.Duration) []BusEvent {
	t.Helper()
	// The script stops at d; the context only bounds a script that hangs.
	ctx, cancel := context.WithTimeout(t.Context(), d+time.Minute)
	defer cancel()
	out := b.m.run(t, ctx, b.region, "receive", b.QueueURL, strconv.Itoa(n), strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
	var events []BusEvent
	lines := bufio.NewScanner(bytes.NewReader(out))
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		var e BusEvent
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			t.Fatalf("queue message %s: %v", lines.Bytes(), err)
		}
		events = append(events, e)
	}
	if len(events) < n {
		t.Fatalf("%d of %d events on the queue after %s", len(events), n, d)
	}
	return events
}
