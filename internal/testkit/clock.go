package testkit

import (
	"sync/atomic"
	"time"
)

// Clock is a time source for the code under test that the test moves
// forward (or back) with Advance. Pass its Now method where a
// func() time.Time is wanted. It is safe for concurrent use: a server may
// read it from its own goroutines while the test advances it.
type Clock struct {
	fixed  bool // stands at start; else follows the real time
	start  time.Time
	offset atomic.Int64 // a time.Duration: how far it was advanced
}

// NewClock returns a clock that stands still at start until advanced.
func NewClock(start time.Time) *Clock { return &Clock{fixed: true, start: start} }

// RealClock returns a clock that follows the real time, plus what it is
// advanced by: for code that also waits real timeouts, or that checks
// times a real party (an IdP, ClickHouse) stamped.
func RealClock() *Clock { return &Clock{} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	t := c.start
	if !c.fixed {
		t = time.Now()
	}
	return t.Add(time.Duration(c.offset.Load()))
}

// Advance moves the clock by d (back when d is negative).
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
