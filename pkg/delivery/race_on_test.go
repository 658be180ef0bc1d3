//go:build race

package delivery

// raceAllocs is what the race detector's instrumentation adds to an
// allocation count: the budgets hold for the code, not for the detector.
const raceAllocs = 8
