package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"golang.org/x/sync/errgroup"

	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/kafka/kafkatest"
	"github.com/heraldhq/herald/pkg/peertest"
	"github.com/heraldhq/herald/services/devstack/mailcatcher"
)

// replicated are the compose services the test runs twice, with the
// variable that names each one's consumer group: a shared broker keeps
// every test's groups apart.
var replicated = map[string]string{
	"rule-evaluator":     "HERALD_EVALUATOR_GROUP",
	"webhook-sender":     "HERALD_WEBHOOK_GROUP",
	"email-sender":       "HERALD_EMAIL_GROUP",
	"eventbridge-sender": "HERALD_EVENTBRIDGE_GROUP",
}

// TestComposeTopologyDeliversAfterLosingAReplica runs docker-compose.yml
// without containers: every Herald service from its own binary, as its own
// process, with the environment the file gives it (host names pointed at
// the test's peers on loopback, moto's server for the aws service), the
// evaluator and each sender twice. The one-shots create the topics and the
// demo tenant; the README walkthrough then delivers a webhook, an email and
// an event on the tenant's EventBridge bus for every event, and does so
// again after one replica of the evaluator and of each sender is stopped.
func TestComposeTopologyDeliversAfterLosingAReplica(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.Prefix(t)
	// The compose file's aws service, moto, with the tenant's bus on it and
	// a rule sending the bus's events to a queue the test reads.
	moto := peertest.StartMoto(t)
	bus := moto.QueuedBus(t, "eu-west-1", "herald-notifications")
	p := loadCompose(t)

	bin := t.TempDir()
	var g errgroup.Group
	for _, name := range sortedKeys(p.Services) {
		if cmd := composeCommand(p.Services[name]); cmd != "" && !slices.Contains(heraldBinaries, cmd) {
			t.Fatalf("compose service %s runs %s, which this test does not build", name, cmd)
		}
	}
	for _, cmd := range heraldBinaries {
		g.Go(func() error {
			dir := filepath.Join(root, "services", cmd)
			if cmd == "bootstrap" {
				dir = filepath.Join(root, "deploy", cmd)
			}
			if b, err := exec.Command("go", "build", "-C", dir, "-o", filepath.Join(bin, cmd), "./cmd/"+cmd).CombinedOutput(); err != nil {
				return fmt.Errorf("build %s: %v\n%s", cmd, err, b)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	// The peers the compose file names, on loopback.
	reg := srfake.New()
	t.Cleanup(reg.Close)
	var mu sync.Mutex
	webhooks := map[string]map[string]any{} // by account
	emails := map[string]mailcatcher.Message{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.Header.Get("webhook-signature") == "" || r.Header.Get("webhook-id") != body["id"] {
			t.Errorf("webhook %v: headers %v, want a signature and webhook-id the notification's id", body["id"], r.Header)
		}
		event, _ := body["event"].(map[string]any)
		account, _ := event["accountId"].(string)
		mu.Lock()
		webhooks[account] = body
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	catcher, err := mailcatcher.Listen("127.0.0.1:0", func(m mailcatcher.Message) {
		mu.Lock()
		defer mu.Unlock()
		for _, to := range m.To {
			if account, ok := strings.CutSuffix(to, "@example.com"); ok && strings.HasPrefix(account, "acct-") {
				emails[account] = m
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = catcher.Close() })
	// The services export traces; the collector only has to answer.
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(collector.Close)
	hosts := map[string]string{
		"kafka":           strings.Join(brokers, ","),
		"schema-registry": hostOf(t, reg.URL()),
		"otel-collector":  hostOf(t, collector.URL),
		"aws":             hostOf(t, moto.URL),
	}
	for _, name := range sortedKeys(p.Services) {
		if s := p.Services[name]; composeCommand(s) != "" && !isOneShot(s) {
			hosts[name] = freeAddr(t)
		}
	}

	run := func(name string, replica int) *process {
		t.Helper()
		s := p.Services[name]
		env := topologyEnv(t, p, environment(s), hosts)
		env["HERALD_KAFKA_TOPIC_PREFIX"] = prefix
		if !isOneShot(s) {
			env["HERALD_HTTP_ADDR"] = hosts[name]
			if replica > 0 {
				env["HERALD_HTTP_ADDR"] = freeAddr(t)
			}
		}
		if v := replicated[name]; v != "" {
			env[v] = prefix + name
		}
		if name == "rule-evaluator" {
			env["HERALD_EVALUATOR_TRANSACTIONAL_ID"] = fmt.Sprintf("%s%s-%d", prefix, name, replica)
		}
		// Where the compose file lets a service reach private networks,
		// its peers here are on loopback.
		if env["HERALD_WEBHOOK_ALLOW_NETWORKS"] != "" {
			env["HERALD_WEBHOOK_ALLOW_LOOPBACK"] = "true"
		}
		return start(t, fmt.Sprintf("%s-%d", name, replica), filepath.Join(bin, composeCommand(s)), env)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 80*time.Second)
	defer cancel()
	run("topics", 0).succeed(t, ctx)
	topicsVisible(t, ctx, brokers, prefix)
	var services []*process
	stopped := map[string]*process{}
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if composeCommand(s) == "" || isOneShot(s) {
			continue
		}
		services = append(services, run(name, 0))
		if replicated[name] != "" {
			stopped[name] = run(name, 1)
			services = append(services, stopped[name])
		}
	}
	if len(stopped) != len(replicated) {
		t.Fatalf("docker-compose.yml runs %d of the %d replicated services", len(stopped), len(replicated))
	}
	for _, proc := range services {
		proc.ready(t, ctx)
	}
	run("seed", 0).succeed(t, ctx)
	groupsShared(t, ctx, brokers, prefix)

	seed := environment(p.Services["seed"])
	key := seed["HERALD_BOOTSTRAP_API_KEY"]
	tenant := seed["HERALD_BOOTSTRAP_TENANT"]
	admin := "http://" + hosts["admin-api"]
	ingest := "http://" + hosts["ingest"]
	api := client{t: t, ctx: ctx, key: key}

	// The README walkthrough: a webhook destination and its rule, an SMTP
	// profile on the mail catcher, a template, an email destination and
	// its rule, an EventBridge destination and its rule.
	lowData := func(name string, dest map[string]any) {
		t.Helper()
		api.want(http.StatusCreated, "POST", admin+"/v1/rules", fmt.Sprintf(`{"name":%q,`+
			`"on":{"entityTypes":["Balance"],"operations":["UPDATE"]},`+
			`"when":"new.remaining < new.total * 0.2 && old.remaining >= old.total * 0.2",`+
			`"notification":{"name":"UnitAllowanceThreshold","state":"low"},"destinations":[%q]}`, name, dest["id"]))
	}
	dest := api.want(http.StatusCreated, "POST", admin+"/v1/destinations",
		`{"type":"webhook","name":"ops","webhook":{"url":"`+receiver.URL+`/hook"}}`)
	lowData("low data", dest)
	_, port, _ := net.SplitHostPort(catcher.Addr())
	api.want(http.StatusCreated, "POST", admin+"/v1/smtp-profiles",
		`{"name":"local","host":"127.0.0.1","port":`+port+`,"fromName":"Herald demo","fromAddress":"alerts@example.com","tls":"none"}`)
	tpl := api.want(http.StatusCreated, "POST", admin+"/v1/email-templates", `{"name":"low balance",`+
		`"subject":"{{.Notification.Name}}: account {{.Notification.Event.AccountID}} is {{.Notification.State}}",`+
		`"textBody":"{{.Notification.New.remaining}} of {{.Notification.New.total}} {{.Notification.New.unit}} left."}`)
	mail := api.want(http.StatusCreated, "POST", admin+"/v1/destinations", fmt.Sprintf(
		`{"type":"email","name":"billing mail","email":{"templateId":%q,"toContactTypes":["billing"],"cc":["ops@example.com"]}}`, tpl["id"]))
	lowData("low data by email", mail)
	busDest := api.want(http.StatusCreated, "POST", admin+"/v1/destinations",
		`{"type":"eventbridge","name":"totogi bus","eventbridge":{"eventBusArn":"`+bus.ARN+`"}}`)
	lowData("low data on the bus", busDest)

	// Each event is an account of its own, so the events spread over the
	// partitions of both replicas.
	const events = 12
	round := func(n int) {
		t.Helper()
		var accounts []string
		for i := range events {
			account := fmt.Sprintf("acct-%d-%d", n, i)
			accounts = append(accounts, account)
			api.want(http.StatusCreated, "PUT", admin+"/v1/accounts/"+account+"/contacts/billing",
				`{"name":"Ana Núñez","email":"`+account+`@example.com"}`)
		}
		for i, account := range accounts {
			img := func(rem int) string {
				return fmt.Sprintf(`{"id":"bal-%d","accountId":%q,"unit":"MB","total":1000,"used":%d,"remaining":%d}`, i, account, 1000-rem, rem)
			}
			api.accepted(ingest+"/v1/events", fmt.Sprintf(
				`{"entityType":"Balance","entityId":"bal-%d","operation":"UPDATE","accountId":%q,"old":%s,"new":%s}`, i, account, img(300), img(150)))
		}
		for {
			mu.Lock()
			var missing []string
			for _, account := range accounts {
				if webhooks[account] == nil {
					missing = append(missing, "webhook for "+account)
				}
				if emails[account].Header == nil {
					missing = append(missing, "email for "+account)
				}
			}
			mu.Unlock()
			if len(missing) == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("round %d: %d of %d webhooks and emails never arrived: %v", n, len(missing), 2*events, missing)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The bus's events, by account; a copy of an earlier round's event
		// may come first.
		onBus := map[string]busDetail{}
		deadline, _ := ctx.Deadline()
		for len(onBus) < events {
			for _, e := range bus.Receive(t, events-len(onBus), time.Until(deadline)) {
				var d busDetail
				if err := json.Unmarshal(e.Detail, &d); err != nil {
					t.Fatalf("event %s: detail %s: %v", e.ID, e.Detail, err)
				}
				if e.Source != "herald.notifications" || e.DetailType != "UnitAllowanceThreshold" || e.Region != "eu-west-1" {
					t.Errorf("event %s: source %q, detail-type %q, region %s; want herald.notifications, UnitAllowanceThreshold, eu-west-1", e.ID, e.Source, e.DetailType, e.Region)
				}
				if account := d.EventData.AccountID; slices.Contains(accounts, account) {
					onBus[account] = d
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, account := range accounts {
			w := webhooks[account]
			if w["name"] != "UnitAllowanceThreshold" || w["state"] != "low" || w["tenantId"] != tenant {
				t.Errorf("webhook for %s: %v, want UnitAllowanceThreshold, low, tenant %s", account, w, tenant)
			}
			m := emails[account]
			want := "UnitAllowanceThreshold: account " + account + " is low"
			if subject := m.Header.Get("Subject"); subject != want || m.From != "alerts@example.com" || !slices.Contains(m.To, "ops@example.com") {
				t.Errorf("email for %s: from %s to %v, subject %q; want from alerts@example.com to it and ops@example.com, subject %q", account, m.From, m.To, subject, want)
			}
			if !bytes.Contains(m.Raw, []byte("150 of 1000 MB left.")) {
				t.Errorf("email for %s has not the template's body:\n%s", account, m.Raw)
			}
			d := onBus[account]
			if info := d.EventData.Info; info.Name != "UnitAllowanceThreshold" || info.State != "low" || d.ProviderID != tenant || d.NotificationID == "" {
				t.Errorf("event on the bus for %s: %+v, want notification UnitAllowanceThreshold, low, provider %s", account, d, tenant)
			}
		}
	}

	round(1)
	for _, name := range sortedKeys(stopped) {
		stopped[name].stop(t)
	}
	round(2)
}

// busDetail is what the test reads of an event's detail in Totogi's format,
// the EventBridge destination's default.
type busDetail struct {
	NotificationID string `json:"notificationid"`
	ProviderID     string `json:"providerid"`
	EventData      struct {
		AccountID string `json:"accountid"`
		Info      struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"notificationInformation"`
	} `json:"eventdata"`
}

// heraldBinaries are the commands the compose file runs from
// deploy/Dockerfile.
var heraldBinaries = []string{"ingest", "admin-api", "rule-evaluator", "webhook-sender", "email-sender", "eventbridge-sender", "bootstrap"}

// composeHost matches a compose service's name and port at the start of a
// value, after a scheme's // or in a comma-separated list.
var composeHost = regexp.MustCompile(`(^|//|,)([a-z][a-z0-9-]*):[0-9]+`)

// topologyEnv returns env with every compose host name:port replaced by
// the loopback address hosts gives it, failing for a compose service the
// test has no stand-in for.
func topologyEnv(t *testing.T, p *types.Project, env map[string]string, hosts map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range env {
		out[k] = composeHost.ReplaceAllStringFunc(v, func(m string) string {
			sub := composeHost.FindStringSubmatch(m)
			if _, ok := p.Services[sub[2]]; !ok {
				return m
			}
			addr, ok := hosts[sub[2]]
			if !ok {
				t.Fatalf("%s=%s names compose service %s, which the test does not stand in for", k, v, sub[2])
			}
			return sub[1] + addr
		})
	}
	return out
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// handedOut holds the addresses freeAddr has returned: a port is free once
// its probe closes, so the kernel may offer it again before the service it
// was meant for has started.
var handedOut sync.Map

// freeAddr returns a loopback address with a port nothing listens on and
// that it has not returned before.
func freeAddr(t *testing.T) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// process is one Herald command running for the test, its output in a
// file shown if the test fails.
type process struct {
	name, log string
	env       map[string]string
	cmd       *exec.Cmd
	exited    chan struct{}
	err       error
}

// start runs binary with exactly env, stopping it when the test ends.
func start(t *testing.T, name, binary string, env map[string]string) *process {
	t.Helper()
	p := &process{name: name, log: filepath.Join(t.TempDir(), name+".log"), env: env, exited: make(chan struct{})}
	logs, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(binary)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		logs.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", name, b[max(0, len(b)-8192):])
		}
	})
	return p
}

// stop sends SIGTERM and waits for the process to drain and exit, killing
// it if it does not within 20s.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s stopped with %v", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

// succeed waits for a one-shot to finish without error.
func (p *process) succeed(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-p.exited:
		if p.err != nil {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s: %v\n%s", p.name, p.err, b)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not finish", p.name)
	}
}

// ready polls the process's /readyz until it answers 200.
func (p *process) ready(t *testing.T, ctx context.Context) {
	t.Helper()
	u := "http://" + p.env["HERALD_HTTP_ADDR"] + "/readyz"
	for {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s", p.name, u)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// topicsVisible waits until the broker's metadata shows every topic the
// services use with its partitions: the topics one-shot can finish, its
// creations answered, before a service started right after it sees them,
// and the senders refuse to start without their retry topics.
func topicsVisible(t *testing.T, ctx context.Context, brokers []string, prefix string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topics := (kafka.Config{TopicPrefix: prefix}).Topics()
	names := []string{topics.Events, topics.Notifications, topics.Config, topics.EventsDLQ, topics.Deliveries, topics.Subscriptions}
	for _, ch := range kafka.Channels {
		names = append(names, topics.Retry(ch), topics.DLQ(ch))
	}
	var missing []string
	for {
		td, err := kadm.NewClient(cl).ListTopics(ctx, names...)
		missing = missing[:0]
		for _, name := range names {
			if d := td[name]; d.Err != nil || len(d.Partitions) == 0 {
				missing = append(missing, name)
			}
		}
		if err == nil && len(missing) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the topics one-shot finished, but the broker does not show %v: %v", missing, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// groupsShared waits until every replicated service's group has both
// replicas as members, each with partitions of its own, so that stopping
// one takes work away from it.
func groupsShared(t *testing.T, ctx context.Context, brokers []string, prefix string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var groups []string
	for name := range replicated {
		groups = append(groups, prefix+name)
	}
	var state []string
	for {
		described, err := adm.DescribeGroups(ctx, groups...)
		state = state[:0]
		for _, g := range groups {
			d := described[g]
			assigned := 0
			for _, m := range d.Members {
				if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 {
					assigned++
				}
			}
			if d.State != "Stable" || assigned != 2 {
				state = append(state, fmt.Sprintf("%s: %s, %d of %d members with partitions", g, d.State, assigned, len(d.Members)))
			}
		}
		if err == nil && len(state) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replicas do not share their groups: %v %v", err, state)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// client calls the Herald APIs with a tenant's API key.
type client struct {
	t   *testing.T
	ctx context.Context
	key string
}

func (c client) do(method, url, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.ctx, method, url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// want calls the API and fails unless it answers status; it returns the
// answer's JSON object.
func (c client) want(status int, method, url, body string) map[string]any {
	c.t.Helper()
	code, raw := c.do(method, url, body)
	if code != status {
		c.t.Fatalf("%s %s = %d %s, want %d", method, url, code, raw, status)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		c.t.Fatalf("%s %s: answer is not JSON: %s", method, url, raw)
	}
	return out
}

// accepted posts an event until ingest accepts it: ingest learns of the
// tenant's key from the config topic, after the admin API has written it.
func (c client) accepted(url, body string) {
	c.t.Helper()
	for {
		code, raw := c.do("POST", url, body)
		if code == http.StatusAccepted {
			return
		}
		if code != http.StatusUnauthorized || c.ctx.Err() != nil {
			c.t.Fatalf("POST %s = %d %s, want %d", url, code, raw, http.StatusAccepted)
		}
		select {
		case <-c.ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
