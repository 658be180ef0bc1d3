package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// floorWorkers is how many requests the floor's last stage has in flight
// at once, as the bench's webhook destination allows the sender.
const floorWorkers = 64

// startFloor starts the pipeline's shape with nothing of Herald in it, on
// the same broker: the end-to-end baseline. Three stages, each what a
// franz-go user writes first:
//
//   - an HTTP handler that writes each request's body to a topic and
//     answers 202 once the broker has acknowledged it;
//   - a consume, produce and commit loop in a transaction per poll
//     (GroupTransactSession), copying each event to a second topic with the
//     time it was copied, as the evaluator stamps a notification;
//   - a read-committed consumer POSTing each record to a receiver, 64 at a
//     time, one key on one connection's queue, as the sender does.
//
// Its latencies at the pipeline's loads are what Kafka's exactly-once
// chain costs on this host. It is a stack whose API is the handler, so
// that the same pacing and clocks measure both.
func startFloor(ctx context.Context, brokers []string) (*stack, error) {
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	prefix := fmt.Sprintf("bench-floor-%x.", suffix)
	events, copies := prefix+"events", prefix+"copies"

	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	created, err := kadm.NewClient(admin).CreateTopics(ctx, 6, 1, nil, events, copies)
	if err == nil {
		err = created.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("floor topics: %w", err)
	}

	s := &stack{
		client:   &http.Client{Transport: &http.Transport{MaxConnsPerHost: 64, MaxIdleConnsPerHost: 64}},
		accepted: map[string]time.Time{}, received: map[string]time.Time{}, made: map[string]time.Time{},
	}
	receiver, err := listen(ctx, http.HandlerFunc(s.receive))
	if err != nil {
		return nil, err
	}
	front, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, front.Close)
	api, err := listen(ctx, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var e struct {
			AccountID string `json:"accountId"`
		}
		if err == nil {
			err = json.Unmarshal(body, &e)
		}
		if err == nil {
			err = front.ProduceSync(r.Context(), &kgo.Record{Topic: events, Key: []byte(e.AccountID), Value: body}).FirstErr()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	if err != nil {
		return nil, err
	}
	s.url = "http://" + api

	copier, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0),
		kgo.ConsumerGroup(prefix+"copier"), kgo.ConsumeTopics(events), kgo.TransactionalID(prefix+"copier"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RequireStableFetchOffsets())
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, copier.Close)
	go floorErr(ctx, "copier", copyInTransactions(ctx, copier, copies))

	reader, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(prefix+"poster"), kgo.ConsumeTopics(copies),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, reader.Close)
	go floorErr(ctx, "poster", postEach(ctx, reader, s.client, "http://"+receiver+"/hook"))
	return s, nil
}

// listen serves h on a loopback port until ctx ends and returns its
// address.
func listen(ctx context.Context, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h}
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	go func() { _ = srv.Serve(l) }()
	return l.Addr().String(), nil
}

// floorErr reports a stage of the floor that stopped before the run
// ended; its events then never arrive, and the run says how many.
func floorErr(ctx context.Context, stage string, errs <-chan error) {
	if err := <-errs; err != nil && ctx.Err() == nil {
		fmt.Printf("  floor: %s stopped: %v\n", stage, err)
	}
}

// copyInTransactions copies each event to topic as what the receiver
// reads: the event's id and when it was copied, one transaction a poll.
func copyInTransactions(ctx context.Context, sess *kgo.GroupTransactSession, topic string) <-chan error {
	errs := make(chan error, 1)
	go func() {
		errs <- func() error {
			for ctx.Err() == nil {
				fetches := sess.PollRecords(ctx, 10000)
				if fetches.NumRecords() == 0 {
					continue
				}
				if err := sess.Begin(); err != nil {
					return err
				}
				var produced kgo.FirstErrPromise
				fetches.EachRecord(func(r *kgo.Record) {
					var e struct {
						EventID string `json:"eventId"`
					}
					_ = json.Unmarshal(r.Value, &e)
					value := fmt.Appendf(nil, `{"createdAt":%q,"event":{"id":%q}}`, time.Now().Format(time.RFC3339Nano), e.EventID)
					sess.Produce(ctx, &kgo.Record{Topic: topic, Key: r.Key, Value: value}, produced.Promise())
				})
				committed, err := sess.End(ctx, kgo.TryCommit)
				if err == nil {
					err = produced.Err()
				}
				if err != nil {
					return err
				}
				if !committed {
					return errors.New("transaction not committed")
				}
			}
			return nil
		}()
	}()
	return errs
}

// postEach POSTs each record's value to url, a key always on the same one
// of floorWorkers queues so that a key's records arrive in order.
func postEach(ctx context.Context, cl *kgo.Client, client *http.Client, url string) <-chan error {
	errs := make(chan error, floorWorkers+1)
	queues := make([]chan []byte, floorWorkers)
	for i := range queues {
		queues[i] = make(chan []byte, 1024)
		go func() {
			for value := range queues[i] {
				resp, err := client.Post(url, "application/json", bytes.NewReader(value))
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	go func() {
		defer func() {
			for _, q := range queues {
				close(q)
			}
		}()
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				h := fnv.New32a()
				_, _ = h.Write(r.Key)
				queues[h.Sum32()%floorWorkers] <- r.Value
			})
		}
	}()
	return errs
}
