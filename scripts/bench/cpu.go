package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/warden-llm/warden/internal/proc"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every
// Linux build this tool meets).
const clockTicks = 100

// cpuSample is the machine's busy CPU time and one process's own, in
// seconds; zero where /proc cannot tell.
type cpuSample struct {
	box, proc float64
}

// sampleCPU reads the busy time of all CPUs from /proc/stat and, when pid
// is not 0, the process's user and system time from /proc/<pid>/stat.
func sampleCPU(pid int) cpuSample {
	var s cpuSample
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		// cpu user nice system idle iowait irq softirq steal ...: busy is
		// everything but idle and iowait.
		if len(f) > 8 && f[0] == "cpu" {
			for i, v := range f[1:9] {
				if i == 3 || i == 4 {
					continue
				}
				n, _ := strconv.ParseFloat(v, 64)
				s.box += n / clockTicks
			}
		}
	}
	if pid == 0 {
		return s
	}
	if f, err := proc.Stat(pid); err == nil && len(f) > 12 {
		u, _ := strconv.ParseFloat(string(f[11]), 64)
		k, _ := strconv.ParseFloat(string(f[12]), 64)
		s.proc = (u + k) / clockTicks
	}
	return s
}

// cpuPerRequest sets r's CPU milliseconds per request from the samples
// taken before and after its run.
func (r *sideResult) cpuPerRequest(before, after cpuSample, pid int) {
	if r.Requests == 0 || after.box <= before.box {
		return
	}
	r.BoxCPUMs = (after.box - before.box) * 1000 / float64(r.Requests)
	if pid != 0 {
		r.OwnCPUMs = (after.proc - before.proc) * 1000 / float64(r.Requests)
	}
}
