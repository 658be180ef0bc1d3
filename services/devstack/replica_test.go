package devstack_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/services/devstack"
)

// TestStandaloneReplicasShareTheDevstacksWork starts a rule evaluator and a
// webhook sender from their own binaries beside the devstack, configured
// only with the devstack's addresses and key (the group names are their
// defaults): each joins the devstack's own consumer group, and every
// notification reaches the receiver exactly once.
func TestStandaloneReplicasShareTheDevstacksWork(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, configstore.KeySize))
	s := startDevstack(t, devstack.Config{APIKey: "hk_replica", SecretKey: key, Partitions: 4})
	bin := t.TempDir()
	env := append(os.Environ(),
		"HERALD_KAFKA_BROKERS="+s.KafkaAddr,
		"HERALD_REGISTRY_URL=http://"+s.RegistryAddr,
		"HERALD_SECRET_KEY="+key,
		"HERALD_HTTP_ADDR=127.0.0.1:0",
		"HERALD_LOG_LEVEL=warn",
		// On one host both evaluators would take the host name as their
		// transactional id; a pod name differs by itself.
		"HERALD_EVALUATOR_TRANSACTIONAL_ID=standalone-evaluator",
		"HERALD_WEBHOOK_ALLOW_LOOPBACK=true", "HERALD_WEBHOOK_ALLOW_HTTP=true", "HERALD_WEBHOOK_PORTS=any",
	)
	for _, svc := range []struct{ dir, cmd string }{
		{"../rule-evaluator", "./cmd/rule-evaluator"},
		{"../webhook-sender", "./cmd/webhook-sender"},
	} {
		out := filepath.Join(bin, filepath.Base(svc.cmd))
		if b, err := exec.Command("go", "build", "-C", svc.dir, "-o", out, svc.cmd).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", svc.cmd, err, b)
		}
		cmd := exec.Command(out)
		cmd.Env = env
		logs, err := os.Create(out + ".log")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(out + ".log")
				t.Logf("%s log:\n%s", filepath.Base(out), b)
			}
		})
	}

	// Both groups hold two members, each with partitions of its own.
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.KafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	groups := []string{"herald-rule-evaluator", "herald-webhook-sender"}
	deadline := time.Now().Add(60 * time.Second)
	for {
		described, err := adm.DescribeGroups(t.Context(), groups...)
		shared := err == nil
		for _, g := range groups {
			d, ok := described[g]
			if !ok || d.State != "Stable" || len(d.Members) != 2 {
				shared = false
				continue
			}
			for _, m := range d.Members {
				if a, ok := m.Assigned.AsConsumer(); !ok || len(a.Topics) == 0 {
					shared = false
				}
			}
		}
		if shared {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the standalone replicas did not join the devstack's groups %v: %v", groups, describe(described))
		}
		time.Sleep(100 * time.Millisecond)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	c := client{t: t, base: "http://" + s.HTTPAddr}
	dest := c.want(http.StatusCreated, "POST", "/v1/destinations", "hk_replica", `{"type":"webhook","name":"r","webhook":{"url":"`+receiver.URL+`/hook"}}`)
	c.want(http.StatusCreated, "POST", "/v1/rules", "hk_replica", fmt.Sprintf(`{"name":"every change",`+
		`"on":{"entityTypes":["Balance"],"operations":["UPDATE"]},"when":"true",`+
		`"notification":{"name":"Changed","state":"changed"},"destinations":[%q]}`, dest["id"]))
	const events = 200
	for i := range events {
		acct := fmt.Sprintf("acct-%d", i%20)
		img := func(rem int) string {
			return fmt.Sprintf(`{"id":"bal-%d","accountId":%q,"unit":"MB","total":1000,"used":%d,"remaining":%d}`, i, acct, 1000-rem, rem)
		}
		c.want(http.StatusAccepted, "POST", "/v1/events", "hk_replica", fmt.Sprintf(
			`{"entityType":"Balance","entityId":"bal-%d","operation":"UPDATE","accountId":%q,"old":%s,"new":%s}`, i, acct, img(600), img(500)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == events {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the receiver got %d of %d notifications", n, events)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("notification %s delivered %d times", id, n)
		}
	}
}

func describe(d kadm.DescribedGroups) string {
	var parts []string
	for name, g := range d {
		parts = append(parts, fmt.Sprintf("%s: %s with %d members", name, g.State, len(g.Members)))
	}
	return strings.Join(parts, "; ")
}
