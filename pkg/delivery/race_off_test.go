//go:build !race

package delivery

// raceAllocs is what the race detector's instrumentation adds to an
// allocation count; none without it.
const raceAllocs = 0
