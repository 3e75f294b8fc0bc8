package benchkit

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Memory is a process's resident memory from /proc/PID/status, in bytes.
type Memory struct {
	RSS int64 // VmRSS: now
	HWM int64 // VmHWM: the peak since start or since ResetPeak
}

// ReadMemory reads pid's VmRSS and VmHWM (zero when it cannot).
func ReadMemory(pid int) Memory {
	var s Memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var p *int64
		switch k {
		case "VmRSS":
			p = &s.RSS
		case "VmHWM":
			p = &s.HWM
		default:
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		*p = kb << 10
	}
	return s
}

// ResetPeak resets pid's VmHWM to its current RSS (clear_refs "5"), so that
// the peak read afterwards is that of what follows.
func ResetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// SampleMemory calls each with pid's memory at once and then every
// interval until stop is closed (the last call comes before it returns).
func SampleMemory(pid int, every time.Duration, stop <-chan struct{}, each func(Memory)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		each(ReadMemory(pid))
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// ProcCPU is a process's user+system CPU time from /proc/PID/stat (clock
// ticks of 10 ms); 0 for pid 0 or when it cannot be read.
func ProcCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// LoadAvg is the 1, 5 and 15 minute load averages, "?" if unknown.
func LoadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
