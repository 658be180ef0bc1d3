//go:build !race

package judge_test

// raceAllocs is what the race detector's instrumentation adds to an
// allocation count; none without it.
const raceAllocs = 0
