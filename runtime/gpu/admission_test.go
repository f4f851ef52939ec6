package gpu

import (
	"strings"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

var t0 = time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)

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
			c := storetest.NewClock(tt.now)
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
	c := storetest.NewClock(t0)
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
		c.Advance(time.Second)
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
