// Package webhooksender delivers notifications to tenants' webhook
// destinations: an HTTP POST of the notification's JSON per destination,
// retried with backoff on failures that may pass, and the consumed offset
// committed only once every destination of the record is done.
package webhooksender

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
	"golang.org/x/sync/errgroup"
)

// Config is the webhook sender's configuration.
type Config struct {
	service.Config
	Group string `env:"WEBHOOK_GROUP" envDefault:"herald-webhook-sender"`
	// Attempts is how many times a delivery is tried before it is given up.
	Attempts int `env:"WEBHOOK_ATTEMPTS" envDefault:"4"`
	// Backoff is the wait before the second attempt; it doubles after.
	Backoff time.Duration `env:"WEBHOOK_BACKOFF" envDefault:"500ms"`
	// Timeout bounds one request, from dial to the end of the response.
	Timeout time.Duration `env:"WEBHOOK_TIMEOUT" envDefault:"10s"`
	// AllowPrivate lets webhooks reach loopback and private addresses; only
	// the devstack and tests set it.
	AllowPrivate bool `env:"WEBHOOK_ALLOW_PRIVATE"`
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("HERALD_WEBHOOK_GROUP: required")
	case c.Attempts < 1:
		return errors.New("HERALD_WEBHOOK_ATTEMPTS: must be at least 1")
	case c.Backoff < 0:
		return errors.New("HERALD_WEBHOOK_BACKOFF: must not be negative")
	case c.Timeout <= 0:
		return errors.New("HERALD_WEBHOOK_TIMEOUT: must be positive")
	}
	return c.Config.Validate()
}

// Sender consumes notifications and posts them to webhooks.
type Sender struct {
	base     *service.Base
	cfg      Config
	consumer *kgo.Client
	http     *http.Client
}

// New connects the webhook sender.
func New(ctx context.Context, c Config) (*Sender, error) {
	base, err := service.Start(ctx, "webhook-sender", c.Config)
	if err != nil {
		return nil, err
	}
	consumer, err := base.NewClient(
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(base.Topics.Notifications),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Notifications are written in transactions; aborted ones must
		// never be delivered.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Offsets are committed by hand once deliveries are done, and
		// a rebalance waits for the poll in hand to finish.
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	)
	if err != nil {
		base.Close()
		return nil, err
	}
	base.Health.AddCheck("kafka", func() error { return consumer.Ping(context.Background()) })
	return &Sender{base: base, cfg: c, consumer: consumer, http: newHTTPClient(c.Timeout, c.AllowPrivate)}, nil
}

// Run runs the webhook sender until ctx ends.
func Run(ctx context.Context, c Config) error {
	s, err := New(ctx, c)
	if err != nil {
		return err
	}
	return service.Serve(ctx, c.HTTPAddr, s)
}

// Base returns what the service shares with every other.
func (s *Sender) Base() *service.Base { return s.base }

// Routes adds nothing: the sender serves health only.
func (s *Sender) Routes(*http.ServeMux) {}

// Close leaves the group and releases the clients.
func (s *Sender) Close() {
	s.consumer.Close()
	s.base.Close()
}

// Run follows the configuration and, once it has caught up, delivers until
// ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.base.FollowConfig(ctx) })
	g.Go(func() error {
		if err := s.base.Config.WaitCaughtUp(ctx); err != nil {
			return nil
		}
		return s.consume(ctx)
	})
	return g.Wait()
}

// consume delivers each poll's partitions concurrently, each partition's
// records in order, then commits what was delivered.
func (s *Sender) consume(ctx context.Context) error {
	for {
		fetches := s.consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			s.consumer.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			s.base.Log.Warn("fetch", "topic", t, "partition", p, "err", err)
		})
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			done []*kgo.Record
		)
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, r := range p.Records {
					if err := s.deliverRecord(ctx, r); err != nil {
						return // cancelled: leave the rest uncommitted
					}
					mu.Lock()
					done = append(done, r)
					mu.Unlock()
				}
			}()
		})
		wg.Wait()
		if len(done) > 0 {
			// Commit even when ctx has ended: these were delivered.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := s.consumer.CommitRecords(cctx, done...); err != nil {
				s.base.Log.Warn("commit", "err", err)
			}
			cancel()
		}
		s.consumer.AllowRebalance()
	}
}

// deliverRecord delivers one notification to each of its webhook
// destinations. It fails only when ctx ends.
func (s *Sender) deliverRecord(ctx context.Context, r *kgo.Record) error {
	var n notification.Notification
	if _, err := s.base.Registry.Decode(ctx, r.Value, &n); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.base.Log.Error("notification skipped: cannot decode", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return nil
	}
	body, err := n.JSON()
	if err != nil {
		s.base.Log.Error("notification skipped: cannot encode payload", "notification", n.ID, "err", err)
		return nil
	}
	for _, id := range n.Destinations {
		doc, ok := s.base.Config.Get(n.TenantID, configstore.KindDestination, id)
		if !ok {
			s.base.Log.Warn("destination gone", "tenant", n.TenantID, "destination", id, "notification", n.ID)
			continue
		}
		d := configstore.Spec[configstore.Destination](doc)
		if d.Type != "webhook" || d.Webhook == nil {
			continue
		}
		if err := s.deliver(ctx, &n, id, d.Webhook, body); err != nil {
			return err
		}
	}
	return nil
}

// deliver posts body until it is accepted, refused for good, or attempts run
// out. It fails only when ctx ends.
func (s *Sender) deliver(ctx context.Context, n *notification.Notification, destID string, wh *configstore.WebhookDestination, body []byte) error {
	log := s.base.Log.With("tenant", n.TenantID, "destination", destID, "notification", n.ID)
	wait := s.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := post(ctx, s.http, wh, n.ID, body)
		if err == nil {
			log.Debug("delivered", "attempt", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var pe *permanentError
		if errors.As(err, &pe) || attempt == s.cfg.Attempts {
			log.Error("delivery given up", "attempt", attempt, "err", err)
			return nil
		}
		log.Warn("delivery failed; will retry", "attempt", attempt, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// permanentError is a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func statusError(code int) error {
	err := fmt.Errorf("endpoint answered %d", code)
	// 4xx says the request itself is refused, except a timeout (408) or a
	// rate limit (429), which may pass.
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		return &permanentError{err}
	}
	return err
}
