// Package proc reads what the kernel says about processes: the fields of a
// process's /proc/<pid>/stat line, and the CPU time this process has used.
package proc

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrBadStat reports a /proc/<pid>/stat line without its command name in
// parentheses.
var ErrBadStat = errors.New("malformed /proc stat")

// Stat returns the fields of pid's /proc/<pid>/stat line after the command
// name (see ParseStat).
func Stat(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	return ParseStat(b)
}

// ParseStat splits a /proc/<pid>/stat line, "pid (comm) state ppid pgrp
// ...", into the fields after the command name: [0] is the state, [2] the
// process group, [11] and [12] the user and system time in clock ticks.
// comm may hold spaces and parentheses, so fields are counted from the
// last ')'.
func ParseStat(stat []byte) ([][]byte, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, ErrBadStat
	}
	return bytes.Fields(stat[i+1:]), nil
}

// CPUTime returns the CPU time (user and system) this process has used so
// far, 0 where the system cannot tell.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
