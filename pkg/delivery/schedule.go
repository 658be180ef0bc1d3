package delivery

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// DefaultSchedule is the retry schedule in the spirit of Standard Webhooks:
// at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h.
const DefaultSchedule = "0s,5s,5m,30m,2h,5h,10h,10h"

// Jitter is the share by which a wait may be shortened or lengthened at
// random, so that deliveries failing together do not retry together.
const Jitter = 0.2

// Schedule is the wait before each attempt; its length is the number of
// attempts.
type Schedule []time.Duration

// ParseSchedule reads a comma-separated list of Go durations.
func ParseSchedule(s string) (Schedule, error) {
	return ParseScheduleList(strings.Split(s, ","))
}

// ParseScheduleList reads a list of Go durations.
func ParseScheduleList(items []string) (Schedule, error) {
	var out Schedule
	for _, it := range items {
		d, err := time.ParseDuration(strings.TrimSpace(it))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration", it)
		}
		if d < 0 {
			return nil, fmt.Errorf("%q is negative", it)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("at least one attempt is required")
	}
	return out, nil
}

// Attempts is how many attempts the schedule allows.
func (s Schedule) Attempts() int { return len(s) }

// Wait returns the wait before attempt n+1 after attempt n failed (n counts
// from 1), with jitter, or false when n was the last attempt. A positive
// after (the endpoint's Retry-After) replaces the scheduled wait, capped
// at the schedule's longest.
func (s Schedule) Wait(n int, after time.Duration) (time.Duration, bool) {
	if n >= len(s) {
		return 0, false
	}
	if after > 0 {
		return min(after, s.longest()), true
	}
	d := s[n]
	if d == 0 {
		return 0, true
	}
	f := 1 - Jitter + 2*Jitter*rand.Float64()
	return time.Duration(float64(d) * f), true
}

func (s Schedule) longest() time.Duration {
	var m time.Duration
	for _, d := range s {
		m = max(m, d)
	}
	return m
}
