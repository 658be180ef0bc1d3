//go:build race

package notification

// racePoolAllocs is what the race detector may add to each check that an
// image or field is JSON: under it sync.Pool drops items at random, and
// encoding/json's Valid takes its scanner from one. The budgets hold for
// the code, not for the detector.
const racePoolAllocs = 1
