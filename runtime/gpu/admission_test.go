package gpu

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)

// clock is an injected clock a test moves by hand.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func snapshotOf(devs ...Device) Snapshot { return Snapshot{Time: t0, Devices: devs} }

func TestCanLoad(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name   string
		need   uint64
		snap   Snapshot
		now    time.Time
		wantOK bool
	}{
		{"no GPU", 100 * gib, Snapshot{}, t0, true},
		{"fits", 4 * gib, snapshotOf(Device{MemoryUsed: 30 * gib, MemoryTotal: 40 * gib}), t0, true},
		{"fits exactly with headroom", 9 * gib, snapshotOf(Device{MemoryUsed: 30 * gib, MemoryTotal: 40 * gib}), t0, true},
		{"headroom tips it over", 10 * gib, snapshotOf(Device{MemoryUsed: 30 * gib, MemoryTotal: 40 * gib}), t0, false},
		{"best device chosen", 20 * gib, snapshotOf(
			Device{Index: 0, MemoryUsed: 39 * gib, MemoryTotal: 40 * gib},
			Device{Index: 1, MemoryUsed: 2 * gib, MemoryTotal: 40 * gib}), t0, true},
		{"no device fits", 20 * gib, snapshotOf(
			Device{Index: 0, MemoryUsed: 39 * gib, MemoryTotal: 40 * gib},
			Device{Index: 1, MemoryUsed: 25 * gib, MemoryTotal: 40 * gib}), t0, false},
		{"used above total", 1, snapshotOf(Device{MemoryUsed: 41 * gib, MemoryTotal: 40 * gib}), t0, false},
		{"need overflows", ^uint64(0), snapshotOf(Device{MemoryTotal: 40 * gib}), t0, false},
		{"stale snapshot allows", 100 * gib, snapshotOf(Device{MemoryUsed: 40 * gib, MemoryTotal: 40 * gib}), t0.Add(11 * time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{now: tt.now}
			a := &Admission{HeadroomBytes: gib, Now: c.Now}
			ok, retry, reason := a.CanLoad(tt.need, tt.snap)
			if ok != tt.wantOK {
				t.Fatalf("CanLoad ok = %v (%s), want %v", ok, reason, tt.wantOK)
			}
			if ok && (retry != 0 || reason != "") {
				t.Errorf("allowed with retry %v reason %q", retry, reason)
			}
			if !ok && (retry != DefaultRetryAfter || !strings.Contains(reason, "not enough free GPU memory")) {
				t.Errorf("refused with retry %v reason %q", retry, reason)
			}
		})
	}
}

func TestPausedHysteresis(t *testing.T) {
	c := &clock{now: t0}
	var alerts []Alert
	a := &Admission{TempLimitC: 85, TempResumeC: 75, Now: c.Now, StaleAfter: -1,
		OnAlert: func(al Alert) { alerts = append(alerts, al) }}
	steps := []struct {
		temps      []uint32 // one per device
		wantPaused bool
		wantAlerts int // total so far
	}{
		{[]uint32{60, 70}, false, 0},
		{[]uint32{60, 84}, false, 0},
		{[]uint32{60, 85}, true, 1}, // one device at the limit pauses
		{[]uint32{60, 90}, true, 1}, // hotter: still one alert
		{[]uint32{80, 76}, true, 1}, // below the limit, above resume: stays paused
		{[]uint32{76, 75}, true, 1}, // all must be at or below resume
		{[]uint32{75, 70}, false, 2},
		{[]uint32{80, 84}, false, 2}, // between resume and limit: stays running
		{[]uint32{86, 60}, true, 3},  // a second crossing, a second alert
		{nil, false, 4},              // telemetry lost: resume rather than pause forever
	}
	for i, s := range steps {
		c.now = c.now.Add(time.Second)
		var devs []Device
		for j, temp := range s.temps {
			devs = append(devs, Device{Index: j, TemperatureC: temp})
		}
		if got := a.Paused(snapshotOf(devs...)); got != s.wantPaused {
			t.Errorf("step %d temps %v: paused = %v, want %v", i, s.temps, got, s.wantPaused)
		}
		if len(alerts) != s.wantAlerts {
			t.Fatalf("step %d temps %v: %d alerts, want %d: %+v", i, s.temps, len(alerts), s.wantAlerts, alerts)
		}
	}
	raised, cleared := alerts[0], alerts[1]
	if !raised.Active || raised.Kind != AlertTemperature || raised.Device != 1 || raised.TempC != 85 || raised.LimitC != 85 ||
		!raised.Time.Equal(t0.Add(3*time.Second)) || raised.Message == "" {
		t.Errorf("raised alert = %+v", raised)
	}
	if cleared.Active || cleared.Kind != AlertTemperature || cleared.LimitC != 75 || cleared.Paused != 4*time.Second {
		t.Errorf("cleared alert = %+v", cleared)
	}
}

func TestPausedDisabledAndResumeDefault(t *testing.T) {
	var a Admission
	if a.Paused(snapshotOf(Device{TemperatureC: 200})) {
		t.Errorf("zero Admission paused")
	}
	// A resume threshold at or above the limit still leaves a gap of 1°C.
	b := &Admission{TempLimitC: 80, TempResumeC: 90, StaleAfter: -1}
	for _, s := range []struct {
		temp uint32
		want bool
	}{{80, true}, {79, false}} {
		if got := b.Paused(snapshotOf(Device{TemperatureC: s.temp})); got != s.want {
			t.Errorf("at %d°C paused = %v, want %v", s.temp, got, s.want)
		}
	}
}

// TestAdmissionOverMonitoredFake drives Admission from a Monitor sampling
// the go-nvml dgxa100 fake: memory pressure gates a load, heat pauses
// dispatch and cooling resumes it, with one alert per crossing.
func TestAdmissionOverMonitoredFake(t *testing.T) {
	const gib = 1 << 30
	f := newFakeGPU(t)
	m := NewMonitor(NewNVML(f.server, nil), time.Millisecond)
	m.Start(t.Context())
	defer m.Close()

	var alerts []Alert
	a := &Admission{HeadroomBytes: 2 * gib, TempLimitC: 85, TempResumeC: 75,
		OnAlert: func(al Alert) { alerts = append(alerts, al) }}
	latest := func() Snapshot { s, _ := m.Latest(); return s }
	// until waits for a snapshot satisfying cond and returns it.
	until := func(what string, cond func(Snapshot) bool) Snapshot {
		t.Helper()
		var s Snapshot
		waitFor(t, what, func() bool { s = latest(); return cond(s) })
		return s
	}

	// 40 GiB boards: a 30 GiB model fits while they are empty.
	if ok, _, reason := a.CanLoad(30*gib, latest()); !ok {
		t.Fatalf("CanLoad on idle GPUs refused: %s", reason)
	}
	for i := range 8 {
		f.set(i, func(s *fakeState) { s.used = 12 * gib })
	}
	snap := until("all boards at 12 GiB used", func(s Snapshot) bool {
		for _, d := range s.Devices {
			if d.MemoryUsed != 12*gib {
				return false
			}
		}
		return true
	})
	if ok, retry, reason := a.CanLoad(27*gib, snap); ok || retry <= 0 || reason == "" {
		t.Errorf("CanLoad(27 GiB) with 28 GiB free and 2 GiB headroom = %v %v %q, want refused", ok, retry, reason)
	}
	if ok, _, reason := a.CanLoad(26*gib, snap); !ok {
		t.Errorf("CanLoad(26 GiB) refused: %s", reason)
	}

	heat := func(c uint32) Snapshot {
		f.set(4, func(s *fakeState) { s.tempC = c })
		return until("device 4 at the new temperature", func(s Snapshot) bool { return s.Devices[4].TemperatureC == c })
	}
	for _, step := range []struct {
		tempC      uint32
		wantPaused bool
		wantAlerts int
	}{{70, false, 0}, {88, true, 1}, {80, true, 1}, {74, false, 2}, {86, true, 3}} {
		if got := a.Paused(heat(step.tempC)); got != step.wantPaused {
			t.Errorf("at %d°C paused = %v, want %v", step.tempC, got, step.wantPaused)
		}
		if len(alerts) != step.wantAlerts {
			t.Fatalf("at %d°C %d alerts, want %d", step.tempC, len(alerts), step.wantAlerts)
		}
	}
	if !alerts[0].Active || alerts[0].Device != 4 || alerts[1].Active || !alerts[2].Active {
		t.Errorf("alerts = %+v", alerts)
	}
}
