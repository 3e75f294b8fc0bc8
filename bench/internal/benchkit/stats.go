package benchkit

import (
	"math"
	"slices"
	"time"
)

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of d, which
// it leaves as it is; 0 for no samples.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return SortedPercentile(s, p)
}

// SortedPercentile is Percentile of samples already sorted in ascending
// order (at least one).
func SortedPercentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// YesNo is a "met?" cell of the result tables.
func YesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}
