package emailsender_test

import (
	"bytes"
	"fmt"
	netmail "net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/event"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service/servicetest"
	emailsender "github.com/heraldhq/herald/services/email-sender"
	"github.com/heraldhq/herald/services/email-sender/internal/smtptest"
)

// TestKeyedOrderSurvivesSenderKill sends 1,000 keyed notifications (50
// accounts, 20 each) as emails while the email sender, a real process on
// the real broker, is killed with SIGKILL three times: every notification
// arrives, each account's in the order they were produced, and every
// duplicate carries the Message-ID of the first copy.
func TestKeyedOrderSurvivesSenderKill(t *testing.T) {
	const keys, perKey, total = 50, 20, 50 * 20
	began := time.Now()
	srv := startSMTP(t, smtptest.Config{})
	s := servicetest.NewStack(t)
	writeConfig(t, s.Store, srv)
	produceNotes(t, s.Client, s.Schemas, s.Topics.Notifications, keys, perKey)

	bin := servicetest.Build(t, "./cmd/email-sender")
	env := append(s.Env(),
		"HERALD_WEBHOOK_ALLOW_LOOPBACK=true", "HERALD_EMAIL_PORTS=any", "HERALD_EMAIL_ALLOW_PLAINTEXT=true",
		"HERALD_EMAIL_GROUP="+s.Kafka.TopicPrefix+"email-sender",
		// Static membership: a restarted sender takes its partitions back
		// without waiting for the killed one's session to expire.
		"HERALD_EMAIL_INSTANCE_ID=sender-1",
		"HERALD_EMAIL_POOL_SIZE=8",
		"HERALD_RETRY_SCHEDULE=0s,50ms,100ms,200ms,400ms,800ms",
		"HERALD_DELIVERY_COMMIT_INTERVAL=200ms",
	)
	inbox := &inbox{srv: srv, first: map[string]mailSeen{}}
	sender := servicetest.StartProcess(t, bin, env)
	for i, at := range []int{total / 4, total / 2, 3 * total / 4} {
		inbox.wait(t, at, time.Minute)
		sender.Kill()
		t.Logf("kill %d after %d notifications", i+1, inbox.unique())
		sender.Start()
	}
	inbox.wait(t, total, time.Minute)
	inbox.check(t, keys, perKey)
	t.Logf("%d emails for %d notifications in %s", len(inbox.seen), total, time.Since(began).Round(time.Millisecond))
}

// writeConfig stores the SMTP profile, the template and the keyed email
// destination.
func writeConfig(t *testing.T, store *configstore.Store, srv *smtptest.Server) {
	t.Helper()
	put(t, store, configstore.KindSMTPProfile, "main", plainProfile(srv))
	put(t, store, configstore.KindEmailTemplate, "tpl", configstore.EmailTemplate{Subject: "{{.Notification.Fields.key}} #{{.Notification.Fields.seq}}", TextBody: "seq {{.Notification.Fields.seq}}"})
	put(t, store, configstore.KindDestination, "mail", configstore.Destination{Type: emailsender.Channel, Name: "mail",
		Email: &configstore.EmailDestination{TemplateID: "tpl", To: []string{"ops@herald.example"}}})
}

// produceNotes writes perKey keyed notifications for each of keys accounts
// to the notifications topic, in sequence order.
func produceNotes(t *testing.T, cl *kgo.Client, reg *avro.Registry, topic string, keys, perKey int) {
	t.Helper()
	schema, err := reg.Latest(t.Context(), topic+"-herald.Notification")
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for seq := range perKey {
		for k := range keys {
			acct := fmt.Sprintf("acct-%02d", k)
			n := newNote(notification.ID(tenant, fmt.Sprintf("%s#%d", acct, seq), "rule"), acct,
				map[string]string{"key": strconv.Quote(acct), "seq": strconv.Itoa(seq)})
			n.Destinations = []string{"mail"}
			v, err := schema.Encode(n)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: event.RecordKey(tenant, acct), Value: v})
		}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// mailSeen is the first copy of a notification's email.
type mailSeen struct {
	messageID string
	key       string
	seq       int
}

// inbox reads the server's messages as they arrive.
type inbox struct {
	srv   *smtptest.Server
	seen  []mailSeen // every copy, in arrival order
	first map[string]mailSeen
	dups  int
}

// read parses the messages that arrived since the last read.
func (b *inbox) read(t *testing.T) {
	t.Helper()
	msgs := b.srv.Events("message")
	for _, m := range msgs[len(b.seen):] {
		msg, err := netmail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		key, seqText, _ := strings.Cut(msg.Header.Get("Subject"), " #")
		seq, _ := strconv.Atoi(seqText)
		s := mailSeen{messageID: msg.Header.Get("Message-Id"), key: key, seq: seq}
		id := msg.Header.Get(emailsender.HeaderNotificationID)
		b.seen = append(b.seen, s)
		if f, ok := b.first[id]; ok {
			b.dups++
			if f.messageID != s.messageID {
				t.Errorf("a duplicate of %s has Message-ID %s, the first %s", id, s.messageID, f.messageID)
			}
			continue
		}
		b.first[id] = s
	}
}

func (b *inbox) unique() int { return len(b.first) }

// wait reads until n notifications have arrived or the deadline passes.
func (b *inbox) wait(t *testing.T, n int, deadline time.Duration) {
	t.Helper()
	end := time.Now().Add(deadline)
	for b.read(t); b.unique() < n; b.read(t) {
		left := time.Until(end)
		if left <= 0 {
			t.Fatalf("%d of %d notifications arrived within %s", b.unique(), n, deadline)
		}
		_ = b.srv.Wait("message", len(b.seen)+1, left)
	}
}

// check fails the test unless every notification arrived and each
// account's first copies came in sequence order.
func (b *inbox) check(t *testing.T, keys, perKey int) {
	t.Helper()
	if b.unique() != keys*perKey {
		t.Errorf("%d notifications arrived, want %d", b.unique(), keys*perKey)
	}
	next := map[string]int{}
	firsts := map[string]bool{}
	inversions := 0
	for _, s := range b.seen {
		if firsts[s.messageID] {
			continue
		}
		firsts[s.messageID] = true
		if s.seq != next[s.key] {
			inversions++
			if inversions <= 5 {
				t.Errorf("%s: #%d arrived when #%d was next", s.key, s.seq, next[s.key])
			}
		}
		next[s.key] = s.seq + 1
	}
	if len(next) != keys {
		t.Errorf("emails for %d accounts, want %d", len(next), keys)
	}
	t.Logf("%d emails, %d duplicates, %d order inversions", len(b.seen), b.dups, inversions)
}
