package ruleevaluator

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// session is one of a replica's transactional sessions: a member of the
// evaluator's group with partitions, a producer and timers of its own. It
// polls, judges and commits one transaction at a time; a replica runs
// several so that one judges while another waits for the broker.
type session struct {
	e *Evaluator
	// sess is the transactional session; renewSession replaces it when
	// its producer can no longer transact. Only consume swaps it.
	sess atomic.Pointer[kgo.GroupTransactSession]
	opts []kgo.Opt
	// timers are the timers of the partitions this session holds.
	timers *timers
	// catchUpFirst has the next transaction wait for the views of rules
	// and subscriptions before judging: the last one found them behind.
	catchUpFirst bool
}

// newSession joins the group as a session with transactional id txid.
func newSession(e *Evaluator, c Config, txid string) (*session, error) {
	base := e.base
	tlog, err := newTimerLog(base.KafkaOpts, base.Topics.Timers)
	if err != nil {
		return nil, err
	}
	tm := newTimers(tlog)
	events, lag := base.Topics.Events, e.lag
	s := &session{e: e, timers: tm}
	s.opts = append(append([]kgo.Opt(nil), base.KafkaOpts...),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { tm.assigned(m[events]) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			lag.Forget(m)
			tm.revoked(m[events])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			lag.Forget(m)
			tm.revoked(m[events])
		}),
		// A timer record goes to the partition number of the event that
		// set it; every other record is partitioned by key as usual.
		kgo.RecordPartitioner(timerPartitioner{timers: base.Topics.Timers, other: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}),
		kgo.TransactionalID(txid),
		// An evaluator killed mid-transaction leaves it open until its
		// successor fences it or this timeout ends it; keep the stall short.
		kgo.TransactionTimeout(15*time.Second),
		kgo.ConsumerGroup(c.Group),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.ConsumeTopics(events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
	)
	sess, err := kgo.NewGroupTransactSession(s.opts...)
	if err != nil {
		tlog.Close()
		return nil, fmt.Errorf("transactional session: %w", err)
	}
	s.sess.Store(sess)
	return s, nil
}

// close leaves the group and releases the session's clients.
func (s *session) close() {
	s.sess.Load().Close()
	s.timers.log.Close()
}

// renewSession closes the session and opens a new one with the same
// transactional id: the new producer epoch fences the old, whatever the
// old left open is aborted, and the group hands the partitions back from
// their committed offsets, so nothing is lost or committed twice.
func (s *session) renewSession() error {
	s.e.base.Log.Error("starting a new transactional session", "err", errSessionBroken)
	old := s.sess.Load()
	sess, err := kgo.NewGroupTransactSession(s.opts...)
	if err != nil {
		return fmt.Errorf("transactional session: %w", err)
	}
	s.sess.Store(sess)
	old.Close()
	s.e.metrics.sessions.Add(context.Background(), 1)
	return nil
}

// pendingTimers counts the timers of every session that have not fired.
func (e *Evaluator) pendingTimers() int {
	n := 0
	for _, s := range e.sessions {
		n += s.timers.pending()
	}
	return n
}
