package delivery

// FakeClock is a Clock that moves only when the test advances it, for the
// engine tests of package delivery_test.
type FakeClock = fakeClock

// NewFakeClock returns a FakeClock set to a fixed time.
var NewFakeClock = newFakeClock
