package eventbridgesender_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/peertest"
	eventbridgesender "github.com/heraldhq/herald/services/eventbridge-sender"
)

// moto is moto's server, started for one test on a loopback port.
type moto struct {
	url string
}

// startMoto runs `python -m moto.server` on a free loopback port until
// the test ends.
func startMoto(t *testing.T) *moto {
	t.Helper()
	python := peertest.Python(t)
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
	return &moto{url: "http://" + addr}
}

// awsConfig is a client configuration for moto in region.
func (m *moto) awsConfig(region string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, "herald-test-secret", ""),
		BaseEndpoint: aws.String(m.url),
	}
}

// queuedBus creates, in eu-west-1, the bus named name, an SQS queue and a
// rule sending every event on the bus to the queue; it returns the bus's
// ARN and the queue's URL.
func (m *moto) queuedBus(t *testing.T, name string) (busARN, queueURL string) {
	t.Helper()
	ctx := t.Context()
	cfg := m.awsConfig("eu-west-1")
	eb, q := eventbridge.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	created, err := eb.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	queue, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-queue")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: queue.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutRule(ctx, &eventbridge.PutRuleInput{
		Name: aws.String("everything"), EventBusName: aws.String(name), EventPattern: aws.String(`{"source":[{"prefix":""}]}`),
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.PutTargets(ctx, &eventbridge.PutTargetsInput{
		Rule: aws.String("everything"), EventBusName: aws.String(name),
		Targets: []ebtypes.Target{{Id: aws.String("queue"), Arn: aws.String(attrs.Attributes["QueueArn"])}},
	}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(created.EventBusArn), aws.ToString(queue.QueueUrl)
}

// busEvent is an event as EventBridge hands it to a target.
type busEvent struct {
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Time       time.Time       `json:"time"`
	Region     string          `json:"region"`
	Detail     json.RawMessage `json:"detail"`
}

// receive reads the queue until n events have arrived or d has passed.
func (m *moto) receive(t *testing.T, queueURL string, n int, d time.Duration) []busEvent {
	t.Helper()
	q := sqs.NewFromConfig(m.awsConfig("eu-west-1"))
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var out []busEvent
	for len(out) < n {
		msgs, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("%d of %d events after %s: %v", len(out), n, d, err)
		}
		for _, msg := range msgs.Messages {
			var e busEvent
			if err := json.Unmarshal([]byte(aws.ToString(msg.Body)), &e); err != nil {
				t.Fatalf("queue message %s: %v", aws.ToString(msg.Body), err)
			}
			out = append(out, e)
			if _, err := q.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: msg.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// checkEvent compares an event from the queue with the notification it
// should carry, field by field.
func checkEvent(t *testing.T, e busEvent, n *notification.Notification, source, detailType, format string) {
	t.Helper()
	want, err := eventbridgesender.Detail(n, format)
	if err != nil {
		t.Fatal(err)
	}
	if e.Source != source || e.DetailType != detailType || e.Region != "eu-west-1" {
		t.Errorf("event %s: source %q, detail-type %q, region %s; want %q, %q, eu-west-1", e.ID, e.Source, e.DetailType, e.Region, source, detailType)
	}
	if !e.Time.Equal(n.CreatedAt.Truncate(time.Second)) {
		t.Errorf("event %s: time %s, want the notification's %s", e.ID, e.Time, n.CreatedAt)
	}
	jsonEqual(t, fmt.Sprintf("detail of %s", n.ID), string(e.Detail), string(want))
}

func TestEventsArriveOnTheBusAsSent(t *testing.T) {
	m := startMoto(t)
	arn, queue := m.queuedBus(t, "notifications")
	setAWSEnv(t, m.url)
	eb := newChannel(t, eventbridgesender.Options{Linger: 10 * time.Millisecond, Calls: 2})

	totogi, native := note("acct-1", 1), note("acct-2", 2)
	own := bus(arn, func(d *configstore.EventBridgeDestination) {
		d.Source, d.DetailType, d.Format = "com.example.billing", "Balance notice", notification.FormatNative
	})
	for _, c := range []struct {
		n    *notification.Notification
		dest configstore.Destination
	}{{totogi, bus(arn, nil)}, {native, own}} {
		if o := deliverAll(t, eb, c.dest, []*notification.Notification{c.n}); o[0].err != nil {
			t.Fatalf("deliver %s: %v", c.n.ID, o[0].err)
		}
	}
	events := m.receive(t, queue, 2, 30*time.Second)
	byID := map[string]busEvent{}
	for _, e := range events {
		var d map[string]any
		_ = json.Unmarshal(e.Detail, &d)
		id, _ := d["notificationid"].(string)
		if id == "" {
			id, _ = d["id"].(string)
		}
		byID[id] = e
	}
	checkEvent(t, byID[totogi.ID], totogi, "herald.notifications", totogi.Name, notification.FormatTotogi)
	checkEvent(t, byID[native.ID], native, "com.example.billing", "Balance notice", notification.FormatNative)

	// A bus that does not exist is refused for good.
	missing := "arn:aws:events:eu-west-1:123456789012:event-bus/missing"
	o := deliverAll(t, eb, bus(missing, nil), []*notification.Notification{note("acct-3", 3)})
	if kind, class, _, _ := kindOf(o[0].err); kind != delivery.Permanent || class != "ResourceNotFoundException" {
		t.Errorf("put to a missing bus: %v; want permanent, class ResourceNotFoundException", o[0].err)
	}
}
