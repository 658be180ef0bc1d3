// Package delivery is the engine every sender runs: it consumes the
// notifications topic and the channel's retry topic in one consumer group,
// asks the channel to deliver each notification to each of its
// destinations, and decides what happens after each attempt. A channel
// (webhook, email, EventBridge) implements Channel and nothing else.
//
// # Keyed and unordered
//
// A notification is keyed "{tenant}/{orderingKey}". For a keyed
// destination each (key, destination) pair is a lane: its deliveries run
// one at a time, in offset order, while the other lanes of the partition
// run alongside (key-level parallelism). A failed attempt is retried in
// memory while the next wait is at most RetryInMemory; past that the lane
// is parked: the delivery and every later one of the lane go to the retry
// topic, in order, the partition's offsets commit past them, and the lane
// resumes from there. Unordered deliveries run concurrently; a failure
// whose next wait is long goes to the retry topic with its due time.
//
// The retry topic is partitioned like the notifications topic and the
// group uses the range balancer, so one process owns partition p of both.
// A parkTable counts each lane's parked deliveries; it is rebuilt on
// assignment by scanning the retry partition from its committed offset,
// before any notification of the partition is read. A retry entry not due
// within RetryHold is written back to the topic's end rather than held
// longer (a parked lane only whole, and only when all of it is held), so
// the retry topic's offsets keep committing too.
//
// # Commits
//
// Each partition tracks its records from read to finished; a record is
// finished when each of its deliveries is delivered, dead-lettered, or
// handed to the retry topic (the write acknowledged). Offsets are committed
// every CommitInterval and on revoke or shutdown, up to the first record
// that is not finished; anything after it is read again by the next owner,
// so delivery is at least once, with the notification id as the receiver's
// key to drop duplicates.
//
// # Attempts, retries and failures
//
// Every attempt is written to the deliveries topic as a DeliveryAttempt.
// Waits follow the Schedule (global, or the destination's own) with
// jitter; a Retry-After from the endpoint replaces the wait. A Permanent
// failure, or the last attempt, sends the delivery to the channel's
// dead-letter topic. A Gone failure, or a destination that has failed
// without a success for DisableAfter over at least DisableMinAttempts
// attempts, disables the destination and writes a DestinationDisabled
// notification to the tenant's operational destinations.
//
// # Records
//
// Consumed records go through a Handler, func(ctx, *kgo.Record) error,
// wrapped in middleware: Recover turns a panic into an UnreadableError,
// Unreadable marks records that do not decode, RetryTransient retries the
// rest (an unreachable registry), and DeadLetter sends unreadable records
// to the dead-letter topic.
package delivery
