// Package eventbridgesender is the Amazon EventBridge channel of Herald's
// delivery engine (Totogi's notification delivery): it puts each
// notification as one event on the tenant's bus, with PutEvents and the
// bus ARN as the event bus name, so that the bus may be in another
// account.
//
// EventBridge is the channel. Entries for the same region and
// credentials gather into calls of up to 10 entries and 256 KB (batch.go):
// a call leaves when it is full, or Linger after its first entry, as soon
// as one of the client's call slots is free, so a busy bus fills its calls
// and a quiet one is barely delayed. Each entry's own result decides its
// delivery: only failed entries are retried, throttling and internal
// failures on the engine's schedule, every other error code (a malformed
// detail, access denied) dead-lettered with the code. A throttled call
// backs the whole client off. Credentials come from the SDK's default
// chain; a destination with a role has them from STS AssumeRole with its
// external id, cached until shortly before they expire (clients.go).
//
// Ordering, retries, parking, the dead-letter topic and the attempt log
// are the engine's (pkg/delivery): a keyed destination has one entry in
// flight per ordering key, since EventBridge keeps no order of its own.
package eventbridgesender

import (
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/service"
	"github.com/heraldhq/herald/pkg/telemetry"
)

// Channel is the destination type this sender delivers.
const Channel = "eventbridge"

// Config is the EventBridge sender's configuration. AWS credentials,
// region defaults and endpoints come from the SDK's own variables
// (AWS_PROFILE, AWS_ROLE_ARN, AWS_ENDPOINT_URL, …).
type Config struct {
	service.Config
	Delivery delivery.Config
	// Group is the consumer group of the sender's replicas.
	Group string `env:"EVENTBRIDGE_GROUP" envDefault:"herald-eventbridge-sender"`
	// InstanceID makes the replica a static group member (use the pod
	// name), so a restart takes its partitions back at once.
	InstanceID string `env:"EVENTBRIDGE_INSTANCE_ID"`
	// Linger is how long a PutEvents call waits for more entries after
	// its first.
	Linger time.Duration `env:"EVENTBRIDGE_LINGER" envDefault:"10ms"`
	// Calls bounds the PutEvents calls in flight per region and
	// credentials.
	Calls int `env:"EVENTBRIDGE_CALLS" envDefault:"16"`
	// Timeout bounds one PutEvents call, the SDK's retries included.
	Timeout time.Duration `env:"EVENTBRIDGE_TIMEOUT" envDefault:"10s"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("HERALD_EVENTBRIDGE_GROUP: required")
	case c.Linger < 0:
		return errors.New("HERALD_EVENTBRIDGE_LINGER: must not be negative")
	case c.Linger > time.Second:
		return errors.New("HERALD_EVENTBRIDGE_LINGER: at most 1s; it delays every quiet bus")
	case c.Calls < 1:
		return errors.New("HERALD_EVENTBRIDGE_CALLS: must be at least 1")
	case c.Timeout <= 0:
		return errors.New("HERALD_EVENTBRIDGE_TIMEOUT: must be positive")
	}
	if err := c.Delivery.Validate(); err != nil {
		return err
	}
	return c.Config.Validate()
}

// New connects the EventBridge sender: the delivery engine with the
// EventBridge channel.
func New(ctx context.Context, c Config) (*service.Sender, error) {
	awsConfig, err := LoadAWSConfig(ctx, c.Calls)
	if err != nil {
		return nil, err
	}
	base, err := service.Start(ctx, "eventbridge-sender", c.Config)
	if err != nil {
		return nil, err
	}
	meter := base.Metrics.Meter("herald/eventbridge")
	calls := telemetry.Counter(meter, "herald.eventbridge.calls", "PutEvents calls made.")
	entries := telemetry.Counter(meter, "herald.eventbridge.entries", "Entries sent in PutEvents calls; divided by calls, how full the calls are.")
	eb := NewEventBridge(awsConfig, Options{
		Linger: c.Linger, Calls: c.Calls, Timeout: c.Timeout,
		Observe: func(n int) {
			calls.Add(context.Background(), 1)
			entries.Add(context.Background(), int64(n))
		},
		Tracer: base.Tracer("herald/eventbridge-sender"),
	})
	s, err := service.NewSender(base, service.SenderOptions{
		Channel: Channel, Deliver: eb, Config: c.Delivery, Release: eb.Close,
		Group: delivery.Group{ID: c.Group, InstanceID: c.InstanceID},
	})
	if err != nil {
		base.Close()
		return nil, err
	}
	return s, nil
}

// Run runs the EventBridge sender until ctx ends.
func Run(ctx context.Context, c Config) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, s)
}
