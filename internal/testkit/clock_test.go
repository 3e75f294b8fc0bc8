package testkit

import (
	"sync"
	"testing"
	"time"
)

func TestClockStandsStillUntilAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now = %v, want %v", got, start)
	}
	time.Sleep(time.Millisecond)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now after a real millisecond = %v, want %v", got, start)
	}
	c.Advance(time.Hour)
	c.Advance(-time.Minute)
	if got, want := c.Now(), start.Add(59*time.Minute); !got.Equal(want) {
		t.Fatalf("Now after Advance = %v, want %v", got, want)
	}
}

func TestRealClockFollowsTheRealTimePlusAdvances(t *testing.T) {
	c := RealClock()
	c.Advance(time.Hour)
	before := time.Now()
	got := c.Now()
	after := time.Now()
	if got.Before(before.Add(time.Hour)) || got.After(after.Add(time.Hour)) {
		t.Fatalf("Now = %v, want an hour past a time between %v and %v", got, before, after)
	}
}

func TestClockConcurrentUse(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Second)
				c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), time.Unix(800, 0); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}
