package webhooksender_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
)

// TestKeyedOrderSurvivesReplicaChurn runs the pipeline as real processes,
// three webhook senders and two rule evaluators, while every two seconds
// one of them is stopped (SIGTERM, or SIGKILL in a second run) and a
// replacement started in its place, under each group protocol the broker
// offers. 10,000 events over 100 accounts, flowing in meanwhile, each make
// one keyed notification: the receiver gets every one, each account's in
// the order of its events, and every duplicate carries the webhook-id and
// body of the first delivery.
func TestKeyedOrderSurvivesReplicaChurn(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	dir := t.TempDir()
	bins := binaries{
		sender:    buildCommand(t, ".", "./cmd/webhook-sender", filepath.Join(dir, "webhook-sender")),
		evaluator: buildCommand(t, "../rule-evaluator", "./cmd/rule-evaluator", filepath.Join(dir, "rule-evaluator")),
	}
	offered := groupProtocols(t, brokers)
	for _, protocol := range []string{kafka.GroupProtocolClassic, kafka.GroupProtocolConsumer} {
		for _, stop := range []struct {
			name string
			sig  syscall.Signal
		}{{"SIGTERM", syscall.SIGTERM}, {"SIGKILL", syscall.SIGKILL}} {
			t.Run(protocol+"/"+stop.name, func(t *testing.T) {
				if !slices.Contains(offered, protocol) {
					t.Skipf("the broker offers the group protocols %v", offered)
				}
				churn(t, bins, protocol, stop.sig)
			})
		}
	}
}

type binaries struct{ sender, evaluator string }

// churn is one run of TestKeyedOrderSurvivesReplicaChurn.
func churn(t *testing.T, bins binaries, protocol string, sig syscall.Signal) {
	const (
		keys, perKey = 100, 100
		total        = keys * perKey
		ruleID       = "rul_churn"
		// One step stops a replica and starts its replacement.
		steps   = 9
		cadence = 2 * time.Second
	)
	began := time.Now()
	s := newStack(t)
	// An endpoint's latency keeps deliveries in flight and records read
	// ahead of them, which a stop must neither lose nor reorder.
	k := newSink(t, func(hit, int) int {
		time.Sleep(20 * time.Millisecond)
		return http.StatusNoContent
	})
	s.destination("hook", k.url("hook"), nil)
	for _, d := range []struct {
		tenant, kind, id string
		spec             any
	}{
		{configstore.OperatorTenant, configstore.KindTenant, tenant, configstore.Tenant{Name: "Churn"}},
		{tenant, configstore.KindRule, ruleID, configstore.Rule{
			Name: "every update", On: configstore.RuleOn{EntityTypes: []string{"Balance"}, Operations: []string{"UPDATE"}},
			When:         "true",
			Notification: configstore.RuleNotify{Name: "UnitAllowanceThreshold", State: "low", Fields: map[string]string{"key": "new.accountId", "seq": "int(new.used)"}},
			Destinations: []string{"hook"}, Ordering: configstore.Keyed,
		}},
	} {
		servicetest.Put(t, s.Store, d.tenant, d.kind, d.id, d.spec)
	}

	// Event seq of an account has used = seq, which the rule's fields
	// carry to the receiver.
	want := make(map[string]bool, total)
	bySeq := make([][]*kgo.Record, perKey)
	for seq := range perKey {
		for key := range keys {
			acct := fmt.Sprintf("acct-%03d", key)
			img := func(used int) map[string]any {
				return map[string]any{"id": "bal-" + acct, "accountId": acct, "unit": "MB", "total": 1000.0, "used": float64(used), "remaining": float64(1000 - used)}
			}
			e := &event.Event{
				EventID: fmt.Sprintf("%s#%d", acct, seq), EntityType: "Balance", EntityID: "bal-" + acct, Operation: "UPDATE",
				AccountID: &acct, Old: img(max(seq-1, 0)), New: img(seq),
			}
			key, value, err := event.Encode(t.Context(), s.Schemas, s.Topics.Events, tenant, e, "")
			if err != nil {
				t.Fatal(err)
			}
			bySeq[seq] = append(bySeq[seq], &kgo.Record{Topic: s.Topics.Events, Key: key, Value: value})
			want[notification.ID(tenant, e.EventID, ruleID)] = true
		}
	}

	common := []string{
		"HERALD_KAFKA_BROKERS=" + strings.Join(s.Kafka.Brokers, ","),
		"HERALD_KAFKA_TOPIC_PREFIX=" + s.Kafka.TopicPrefix,
		"HERALD_KAFKA_CREATE_TOPICS=false",
		"HERALD_KAFKA_GROUP_PROTOCOL=" + protocol,
		"HERALD_REGISTRY_URL=" + s.Registry.URL(),
		"HERALD_REGISTRY_REGISTER_SCHEMAS=false",
		"HERALD_HTTP_ADDR=127.0.0.1:0", "HERALD_LOG_LEVEL=error",
	}
	senderGroup, evaluatorGroup := s.Kafka.TopicPrefix+"webhook-sender", s.Kafka.TopicPrefix+"evaluator"
	senderEnv := func(slot string) []string {
		env := append(slices.Clone(common),
			"HERALD_WEBHOOK_ALLOW_LOOPBACK=true", "HERALD_WEBHOOK_ALLOW_HTTP=true", "HERALD_WEBHOOK_PORTS=any",
			"HERALD_WEBHOOK_GROUP="+senderGroup,
			"HERALD_RETRY_SCHEDULE=0s,50ms,100ms,200ms,400ms,800ms",
			"HERALD_DELIVERY_COMMIT_INTERVAL=200ms",
		)
		if sig == syscall.SIGKILL {
			// A killed member never says it left. As the README advises,
			// replicas are static members named for their slot, so that
			// the replacement takes the partitions back instead of the
			// group waiting out the session of the dead one.
			env = append(env, "HERALD_WEBHOOK_INSTANCE_ID="+slot)
		}
		return env
	}
	evaluatorEnv := func(slot string) []string {
		return append(slices.Clone(common),
			"HERALD_EVALUATOR_GROUP="+evaluatorGroup,
			// Stable per slot: the replacement fences its predecessor
			// and aborts the transaction it left open.
			"HERALD_EVALUATOR_TRANSACTIONAL_ID="+s.Kafka.TopicPrefix+slot,
			"HERALD_EVALUATOR_SESSION_TIMEOUT=6s",
			// Small transactions, so that a stop lands between and
			// inside them.
			"HERALD_EVALUATOR_MAX_BATCH=200",
		)
	}
	slots := []struct {
		name, bin string
		env       func(string) []string
	}{
		{"sender-0", bins.sender, senderEnv}, {"evaluator-0", bins.evaluator, evaluatorEnv},
		{"sender-1", bins.sender, senderEnv}, {"evaluator-1", bins.evaluator, evaluatorEnv},
		{"sender-2", bins.sender, senderEnv},
	}
	logs := t.TempDir()
	running := make([]*replica, len(slots))
	t.Cleanup(func() {
		for _, r := range running {
			if r != nil {
				r.kill()
			}
		}
		if t.Failed() {
			showLogs(t, logs)
		}
	})
	for i, sl := range slots {
		running[i] = startReplica(t, logs, sl.name, sl.bin, sl.env(sl.name))
	}

	// The events flow in at an even pace over the churn, so that every
	// stop meets work under way in both services.
	produced := make(chan error, 1)
	go func() {
		tick := time.NewTicker(steps * cadence / perKey)
		defer tick.Stop()
		for _, recs := range bySeq {
			if err := s.Client.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
				produced <- err
				return
			}
			<-tick.C
		}
		produced <- nil
	}()
	for step := range steps {
		time.Sleep(cadence)
		i := step % len(slots)
		running[i].stop(t, sig)
		running[i] = startReplica(t, logs, slots[i].name, slots[i].bin, slots[i].env(slots[i].name))
	}
	if err := <-produced; err != nil {
		t.Fatalf("produce events: %v", err)
	}
	churned := time.Since(began)
	k.waitDelivered(t, total, 2*time.Minute)
	delivered := time.Since(began)
	checkGroupProtocol(t, s.Client, protocol, senderGroup, evaluatorGroup)
	// The replicas stop as in a shutdown, so that any duplicate they
	// still send is checked too.
	for _, r := range running {
		r.stop(t, syscall.SIGTERM)
	}

	k.checkOrder(t, func(string) bool { return true })
	k.mu.Lock()
	var missing []string
	for id := range want {
		if _, ok := k.first["hook/"+id]; !ok {
			missing = append(missing, id)
		}
	}
	extra := len(k.first) - (len(want) - len(missing))
	k.mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("%d notifications never delivered, such as %s", len(missing), missing[0])
	}
	if extra > 0 {
		t.Errorf("%d deliveries of notifications no event made", extra)
	}
	t.Logf("%s, %s: %d restarts, churn over after %s, all delivered after %s, test %s",
		protocol, sig, steps, churned.Round(time.Millisecond), delivered.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// replica is one service process.
type replica struct {
	name     string
	cmd      *exec.Cmd
	exited   chan struct{}
	err      error // of Wait, once exited is closed
	mu       sync.Mutex
	stopping bool
}

// startReplica starts bin with env as the replica of slot name, its output
// going to a file in logs. A replica that exits before it is told to fails
// the test.
func startReplica(t *testing.T, logs, name, bin string, env []string) *replica {
	t.Helper()
	out, err := os.CreateTemp(logs, name+".*.log")
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, cmd: exec.Command(bin), exited: make(chan struct{})}
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdout, r.cmd.Stderr = out, out
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		r.err = r.cmd.Wait()
		out.Close()
		close(r.exited)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.stopping {
			t.Errorf("%s exited on its own: %v", r.name, r.err)
		}
	}()
	return r
}

// stop sends sig and waits for the process to end. After SIGTERM it must
// end within 30 seconds and exit 0: a replica drains and leaves.
func (r *replica) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	select {
	case <-r.exited:
		return
	default:
	}
	if err := r.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s: %v", r.name, err)
	}
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		r.kill()
		t.Fatalf("%s did not end within 30s of %s", r.name, sig)
	}
	if sig == syscall.SIGTERM && r.err != nil {
		t.Errorf("%s ended with %v after SIGTERM, want exit status 0", r.name, r.err)
	}
}

// kill ends the process at once, if it still runs, and waits for it.
func (r *replica) kill() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// showLogs logs the end of each replica's output.
func showLogs(t *testing.T, logs string) {
	files, _ := filepath.Glob(filepath.Join(logs, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 0 {
			t.Logf("%s:\n%s", filepath.Base(f), b[max(len(b)-4096, 0):])
		}
	}
}

// buildCommand builds the command pkg of the module in dir into out.
func buildCommand(t *testing.T, dir, pkg, out string) string {
	t.Helper()
	if b, err := exec.Command("go", "build", "-C", dir, "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// groupProtocols returns the group protocols the broker has enabled.
func groupProtocols(t *testing.T, brokers []string) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	meta, err := adm.BrokerMetadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rcs, err := adm.DescribeBrokerConfigs(t.Context(), meta.Brokers.NodeIDs()[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "group.coordinator.rebalance.protocols" && c.Value != nil {
				return strings.Split(*c.Value, ",")
			}
		}
	}
	return []string{kafka.GroupProtocolClassic}
}

// checkGroupProtocol fails the test unless each group runs protocol, so
// that a client falling back to classic cannot pass for the other.
func checkGroupProtocol(t *testing.T, cl *kgo.Client, protocol string, groups ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListGroupsByType(ctx, []string{protocol})
	if err != nil {
		t.Fatalf("list %s groups: %v", protocol, err)
	}
	for _, g := range groups {
		if _, ok := listed[g]; !ok {
			t.Errorf("group %s does not run the %s protocol", g, protocol)
		}
	}
}
