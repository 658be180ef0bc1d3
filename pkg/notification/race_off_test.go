//go:build !race

package notification

// racePoolAllocs is what the race detector may add to each JSON check;
// none without it.
const racePoolAllocs = 0
