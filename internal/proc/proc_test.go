package proc

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tt := range []struct{ stat, state, pgrp string }{
		{"1234 (ollama) S 1 1200 1200 0 -1 4194560", "S", "1200"},
		{"77 (a) b (c) ) R 5 66 66 0", "R", "66"},
	} {
		f, err := ParseStat([]byte(tt.stat))
		if err != nil || len(f) < 3 || string(f[0]) != tt.state || string(f[2]) != tt.pgrp {
			t.Errorf("ParseStat(%q) = %q, %v; want state %s, pgrp %s", tt.stat, f, err, tt.state, tt.pgrp)
		}
	}
	if f, err := ParseStat([]byte("77 ollama S 1 66")); err != ErrBadStat {
		t.Errorf("no parentheses: %q, %v; want ErrBadStat", f, err)
	}
}

func TestStatSelf(t *testing.T) {
	f, err := Stat(os.Getpid())
	if err != nil || len(f) < 13 {
		t.Fatalf("Stat(self) = %q, %v", f, err)
	}
	if pg, err := strconv.Atoi(string(f[2])); err != nil || pg != syscall.Getpgrp() {
		t.Errorf("process group %q, want %d", f[2], syscall.Getpgrp())
	}
	before := CPUTime()
	x := 0
	for n := 0; CPUTime() == before && n < 1e6; n++ {
		for i := range 1 << 12 {
			x += i
		}
	}
	if CPUTime() <= before {
		t.Errorf("CPUTime did not grow with work (x %d)", x)
	}
}
