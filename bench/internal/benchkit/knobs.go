package benchkit

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// EnvInt is the integer knob name (def when unset); a value that is not a
// number ≥ least fails the benchmark.
func EnvInt(b *testing.B, name string, def, least int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			b.Fatalf("%s=%q: want a number ≥ %d", name, v, least)
		}
		return n
	}
	return def
}

// EnvDuration is the duration knob name (def when unset); a value that is
// not a positive duration fails the benchmark.
func EnvDuration(b *testing.B, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("%s=%q: want a positive duration", name, v)
		}
		return d
	}
	return def
}
