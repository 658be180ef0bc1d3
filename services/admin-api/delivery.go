package adminapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldhq/herald/pkg/configstore"
	"github.com/heraldhq/herald/pkg/delivery"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/kafka"
	"github.com/heraldhq/herald/pkg/notification"
	"github.com/heraldhq/herald/pkg/service"
)

// Bounds of the delivery log the admin API keeps in memory: the newest
// attempts and dead letters are kept, the oldest dropped first.
const (
	maxAttempts    = 200_000
	maxDeadLetters = 50_000
)

// deliveryLog follows the deliveries topic and the channels' dead-letter
// topics, so the API can answer with a notification's attempts and a
// tenant's dead letters, and replays them through the retry topics.
type deliveryLog struct {
	base *service.Base
	cl   *kgo.Client
	log  *slog.Logger

	mu        sync.Mutex
	attempts  map[string][]delivery.Attempt // by notification id
	order     []string                      // notification ids, oldest attempt first
	nAttempts int
	dead      []*deadLetter
	deadSeq   int64 // the sequence number of the newest dead letter
	dropped   int
}

// deadLetter is one entry of a dead-letter topic.
type deadLetter struct {
	Channel      string                     `json:"channel"`
	Notification *notification.Notification `json:"-"`
	Entry        delivery.Entry             `json:"-"`
	At           time.Time                  `json:"-"`
	Offset       int64                      `json:"-"`
	Partition    int32                      `json:"-"`
	key, value   []byte
	replayedAt   *time.Time
	seq          int64 // grows with each dead letter read
}

func newDeliveryLog(base *service.Base) (*deliveryLog, error) {
	topics := []string{base.Topics.Deliveries}
	for _, ch := range kafka.Channels {
		topics = append(topics, base.Topics.DLQ(ch))
	}
	cl, err := base.NewClient(
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// An attempt should be visible within a moment of being made.
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		return nil, err
	}
	return &deliveryLog{base: base, cl: cl, log: base.Log, attempts: map[string][]delivery.Attempt{}}, nil
}

func (l *deliveryLog) close() { l.cl.Close() }

// produce writes recs and waits for the broker.
func (l *deliveryLog) produce(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	return l.cl.ProduceSync(ctx, recs...).FirstErr()
}

// run follows the topics until ctx ends.
func (l *deliveryLog) run(ctx context.Context) error {
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			l.log.Debug("delivery log fetch", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			var err error
			if r.Topic == l.base.Topics.Deliveries {
				err = l.addAttempt(ctx, r)
			} else {
				err = l.addDeadLetter(ctx, r)
			}
			if err != nil && ctx.Err() == nil {
				l.log.Warn("delivery log skips a record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			}
		})
	}
}

func (l *deliveryLog) addAttempt(ctx context.Context, r *kgo.Record) error {
	var a delivery.Attempt
	if _, err := l.base.Registry.Decode(ctx, r.Value, &a); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.attempts[a.NotificationID]; !ok {
		l.order = append(l.order, a.NotificationID)
	}
	l.attempts[a.NotificationID] = append(l.attempts[a.NotificationID], a)
	l.nAttempts++
	for l.nAttempts > maxAttempts && len(l.order) > 0 {
		l.nAttempts -= len(l.attempts[l.order[0]])
		delete(l.attempts, l.order[0])
		l.order = l.order[1:]
	}
	return nil
}

func (l *deliveryLog) addDeadLetter(ctx context.Context, r *kgo.Record) error {
	en, err := delivery.ParseEntry(r)
	if err != nil {
		return err
	}
	var n notification.Notification
	if _, err := l.base.Registry.Decode(ctx, r.Value, &n); err != nil {
		return err
	}
	ch := strings.TrimSuffix(strings.TrimPrefix(r.Topic, l.base.Kafka.TopicPrefix), ".dlq")
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deadSeq++
	l.dead = append(l.dead, &deadLetter{Channel: ch, Notification: &n, Entry: en, At: r.Timestamp, Partition: r.Partition, Offset: r.Offset, key: r.Key, value: r.Value, seq: l.deadSeq})
	if len(l.dead) > maxDeadLetters {
		l.dropped += len(l.dead) - maxDeadLetters
		l.dead = slices.Delete(l.dead, 0, len(l.dead)-maxDeadLetters)
	}
	return nil
}

// deliveryRoutes adds the delivery log, redelivery, dead-letter and
// secret routes.
func (a *API) deliveryRoutes(mux *router, read, write func(http.HandlerFunc) http.Handler) {
	mux.Handle("POST /v1/destinations/{action}", write(a.destinationAction))
	mux.Handle("GET /v1/destinations/{id}/secret", read(a.getSecret))
	mux.Handle("GET /v1/notifications/{id}/attempts", read(a.listAttempts))
	mux.Handle("POST /v1/notifications/{action}", write(a.notificationAction))
	mux.Handle("GET /v1/dlq", read(a.listDeadLetters))
	mux.Handle("POST /v1/dlq:replay", write(a.replayDeadLetters))
}

// listAttempts serves GET /v1/notifications/{id}/attempts.
func (a *API) listAttempts(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	items := a.attemptsOf(tenant, r.PathValue("id"))
	if len(items) == 0 {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no attempts recorded for this notification"))
		return
	}
	items, next := paginate(items, position, p)
	writePage(w, r, items, next)
}

func (a *API) attemptsOf(tenant, id string) []delivery.Attempt {
	l := a.deliveries
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []delivery.Attempt
	for _, at := range l.attempts[id] {
		if at.TenantID == tenant {
			out = append(out, at)
		}
	}
	slices.SortStableFunc(out, func(x, y delivery.Attempt) int { return x.StartedAt.Compare(y.StartedAt) })
	return out
}

// notificationAction serves POST /v1/notifications/{id}:redeliver, which
// sends a notification again, with a fresh set of attempts, to the
// destinations given as {"destinations": [...]}, or to every destination
// that has attempts recorded for it.
func (a *API) notificationAction(w http.ResponseWriter, r *http.Request) {
	id, action, _ := strings.Cut(r.PathValue("action"), ":")
	if action != "redeliver" {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no such action; use :redeliver"))
		return
	}
	var body struct {
		Destinations []string `json:"destinations"`
	}
	if r.ContentLength != 0 {
		if err := httpapi.DecodeJSON(w, r, &body); err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
	}
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	attempts := a.attemptsOf(tenant, id)
	if len(attempts) == 0 {
		httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusNotFound, "no attempts recorded for this notification"))
		return
	}
	dests := body.Destinations
	if len(dests) == 0 {
		for _, at := range attempts {
			if !slices.Contains(dests, at.DestinationID) {
				dests = append(dests, at.DestinationID)
			}
		}
	}
	origin := delivery.Origin{Topic: attempts[0].OriginTopic, Partition: attempts[0].OriginPartition, Offset: attempts[0].OriginOffset}
	rec, err := a.readRecord(r.Context(), origin)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	var recs []*kgo.Record
	for i, dest := range dests {
		doc, ok := a.base.Config.Get(tenant, configstore.KindDestination, dest)
		if !ok {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, "the request is not valid",
				httpapi.FieldError{Field: fmt.Sprintf("destinations[%d]", i), Message: fmt.Sprintf("no destination %q", dest)}))
			return
		}
		recs = append(recs, a.retryRecord(configstore.Spec[configstore.Destination](doc).Type, dest, rec.Key, rec.Value, origin))
	}
	if err := a.deliveries.produce(r.Context(), recs); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"notificationId": id, "destinations": dests})
}

// retryRecord is a delivery due at once, on the channel's retry topic,
// with no attempt made: the engine starts its schedule afresh.
func (a *API) retryRecord(channel, dest string, key, value []byte, origin delivery.Origin) *kgo.Record {
	en := delivery.Entry{Destination: dest, Origin: origin}
	return &kgo.Record{Topic: a.base.Topics.Retry(channel), Key: key, Value: value, Headers: en.Headers()}
}

// readRecord reads the notification record at origin.
func (a *API) readRecord(ctx context.Context, o delivery.Origin) (*kgo.Record, error) {
	cl, err := a.base.NewClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: {o.Partition: kgo.NewOffset().At(o.Offset)}}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, httpapi.NewProblem(http.StatusGone, "the notification is no longer in "+o.Topic)
		}
		var found *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset == o.Offset {
				found = r
			}
		})
		if found != nil {
			return found, nil
		}
		if err := fs.Err0(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("read %s: %w", o, err)
		}
	}
}

// deadLetterView is a dead letter as the API shows it.
type deadLetterView struct {
	Channel        string     `json:"channel"`
	NotificationID string     `json:"notificationId"`
	Name           string     `json:"name"`
	DestinationID  string     `json:"destinationId"`
	Attempts       int        `json:"attempts"`
	ErrorClass     string     `json:"errorClass,omitempty"`
	Error          string     `json:"error,omitempty"`
	DeadLetteredAt time.Time  `json:"deadLetteredAt"`
	ReplayedAt     *time.Time `json:"replayedAt,omitempty"`
	Notification   jsonRaw    `json:"notification"`
}

// deadLetterFilter selects a tenant's dead letters: by destination and by
// the time they were dead-lettered, [from, to).
type deadLetterFilter struct {
	tenant, destination string
	from, to            time.Time
}

func (f deadLetterFilter) match(d *deadLetter) bool {
	return d.Notification.TenantID == f.tenant &&
		(f.destination == "" || d.Entry.Destination == f.destination) &&
		(f.from.IsZero() || !d.At.Before(f.from)) && (f.to.IsZero() || d.At.Before(f.to))
}

func parseFilter(tenant, destination, from, to string) (deadLetterFilter, error) {
	f := deadLetterFilter{tenant: tenant, destination: destination}
	for _, p := range []struct {
		name, v string
		t       *time.Time
	}{{"from", from, &f.from}, {"to", to, &f.to}} {
		if p.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, p.v)
		if err != nil {
			return f, httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: p.name, Message: "an RFC 3339 time"})
		}
		*p.t = t
	}
	return f, nil
}

// listDeadLetters serves GET /v1/dlq?destination=&from=&to=&limit=&cursor=,
// newest first.
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(httpapi.PrincipalFrom(r.Context()).Tenant, q.Get("destination"), q.Get("from"), q.Get("to"))
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	p, err := parsePage(r)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	l := a.deliveries
	l.mu.Lock()
	var matched []*deadLetter
	for i := len(l.dead) - 1; i >= 0; i-- {
		if f.match(l.dead[i]) {
			matched = append(matched, l.dead[i])
		}
	}
	// Newest first: the key grows as the sequence number falls.
	matched, next := paginate(matched, func(_ int, d *deadLetter) string { return fmt.Sprintf("%019d", math.MaxInt64-d.seq) }, p)
	items := make([]deadLetterView, 0, len(matched))
	for _, d := range matched {
		body, _ := d.Notification.JSON()
		items = append(items, deadLetterView{
			Channel: d.Channel, NotificationID: d.Notification.ID, Name: d.Notification.Name, DestinationID: d.Entry.Destination,
			Attempts: d.Entry.Attempts, ErrorClass: d.Entry.ErrorClass, Error: d.Entry.Error, DeadLetteredAt: d.At,
			ReplayedAt: d.replayedAt, Notification: body,
		})
	}
	l.mu.Unlock()
	writePage(w, r, items, next)
}

// replayDeadLetters serves POST /v1/dlq:replay {"destination", "from",
// "to"}: the matching dead letters not replayed yet go back to their
// channel's retry topic with a fresh schedule.
func (a *API) replayDeadLetters(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Destination string `json:"destination"`
		From        string `json:"from"`
		To          string `json:"to"`
	}
	if err := httpapi.DecodeJSON(w, r, &body); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	tenant := httpapi.PrincipalFrom(r.Context()).Tenant
	f, err := parseFilter(tenant, body.Destination, body.From, body.To)
	if err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	if body.Destination != "" {
		if _, ok := a.base.Config.Get(tenant, configstore.KindDestination, body.Destination); !ok {
			httpapi.WriteProblem(w, httpapi.NewProblem(http.StatusBadRequest, "the request is not valid",
				httpapi.FieldError{Field: "destination", Message: fmt.Sprintf("no destination %q", body.Destination)}))
			return
		}
	}
	l := a.deliveries
	l.mu.Lock()
	var picked []*deadLetter
	var recs []*kgo.Record
	for _, d := range l.dead {
		if d.replayedAt == nil && f.match(d) {
			picked = append(picked, d)
			recs = append(recs, a.retryRecord(d.Channel, d.Entry.Destination, d.key, d.value, d.Entry.Origin))
		}
	}
	l.mu.Unlock()
	if err := a.deliveries.produce(r.Context(), recs); err != nil {
		httpapi.WriteError(w, r, a.base.Log, err)
		return
	}
	now := time.Now().UTC()
	l.mu.Lock()
	for _, d := range picked {
		d.replayedAt = &now
	}
	l.mu.Unlock()
	httpapi.WriteJSON(w, http.StatusAccepted, map[string]any{"replayed": len(picked)})
}
