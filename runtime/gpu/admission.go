package gpu

import (
	"fmt"
	"sync"
	"time"
)

// Defaults for Admission's zero-valued settings.
const (
	DefaultRetryAfter = 5 * time.Second
	DefaultStaleAfter = 10 * time.Second
)

// Admission decides, from snapshots, whether a model load fits in free VRAM
// and whether dispatch to the backend must pause because a GPU is too hot.
//
// It is pure logic over the snapshots it is given: it reads no hardware.
// An empty snapshot (no GPU) or a stale one always allows: without
// telemetry Warden behaves as if it had none. The zero value allows
// everything; set the fields before first use and do not change them after.
type Admission struct {
	// HeadroomBytes is VRAM kept free on top of a model's estimated need.
	HeadroomBytes uint64
	// TempLimitC pauses dispatch when any GPU reaches it (0 disables the
	// temperature gate); dispatch resumes only when every GPU has cooled to
	// TempResumeC or below. A TempResumeC at or above TempLimitC means
	// TempLimitC − 1.
	TempLimitC, TempResumeC uint32
	// RetryAfter is suggested to a client refused for VRAM (default
	// DefaultRetryAfter).
	RetryAfter time.Duration
	// StaleAfter is how old a snapshot may be before it is ignored (default
	// DefaultStaleAfter; negative: never stale).
	StaleAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnAlert is called once when the temperature limit is crossed and once
	// when it clears. It runs with the Admission's lock held, so calls are
	// in order; it must not call back into the Admission.
	OnAlert func(Alert)

	mu     sync.Mutex
	paused bool
	since  time.Time
}

// Alert reports a limit crossed (Active) or cleared (!Active).
type Alert struct {
	Time   time.Time
	Kind   string // AlertTemperature or AlertMemory
	Active bool
	Model  string // the model whose load is held (AlertMemory)
	Device int    // the hottest device
	TempC  uint32 // its temperature
	LimitC uint32 // TempLimitC when raised, the resume threshold when cleared
	// Paused is how long dispatch was paused (set when cleared).
	Paused  time.Duration
	Message string
}

// Alert kinds.
const (
	// AlertTemperature: dispatch paused (or resumed) for GPU temperature.
	AlertTemperature = "gpu_temperature"
	// AlertMemory: a model's load is held (or no longer) for free VRAM.
	AlertMemory = "gpu_memory"
)

func (a *Admission) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// usable reports whether snap carries GPU telemetry fresh enough to act on.
func (a *Admission) usable(snap Snapshot) bool {
	if len(snap.Devices) == 0 {
		return false
	}
	stale := a.StaleAfter
	if stale == 0 {
		stale = DefaultStaleAfter
	}
	return stale < 0 || a.now().Sub(snap.Time) <= stale
}

// CanLoad reports whether a model needing need bytes of VRAM can be loaded
// now: the device with the most free VRAM must have at least need +
// HeadroomBytes free. If not, retryAfter suggests when to try again and
// reason says why (safe to show a client).
func (a *Admission) CanLoad(need uint64, snap Snapshot) (ok bool, retryAfter time.Duration, reason string) {
	if !a.usable(snap) {
		return true, 0, ""
	}
	want := need + a.HeadroomBytes
	if want < need { // overflow
		want = ^uint64(0)
	}
	best := snap.Devices[0]
	for _, d := range snap.Devices[1:] {
		if d.MemoryFree() > best.MemoryFree() {
			best = d
		}
	}
	if free := best.MemoryFree(); free < want {
		retry := a.RetryAfter
		if retry <= 0 {
			retry = DefaultRetryAfter
		}
		return false, retry, fmt.Sprintf("not enough free GPU memory to load the model: need %s (%s + %s headroom), most free on any GPU is %s",
			mib(want), mib(need), mib(a.HeadroomBytes), mib(free))
	}
	return true, 0, ""
}

func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }

// Paused reports whether dispatch must pause for temperature, updating the
// gate from snap: it pauses when any device is at or above TempLimitC and
// resumes only when every device is at or below the resume threshold.
// Crossing either way calls OnAlert once. A snapshot without usable
// telemetry (no GPU, or stale) resumes a paused gate, with a cleared alert,
// rather than pausing dispatch forever.
func (a *Admission) Paused(snap Snapshot) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.TempLimitC == 0 {
		return false
	}
	resume := a.TempResumeC
	if resume >= a.TempLimitC {
		resume = a.TempLimitC - 1
	}
	hot, hottest := false, Device{}
	if a.usable(snap) {
		hottest = snap.Devices[0]
		for _, d := range snap.Devices {
			if d.TemperatureC > hottest.TemperatureC {
				hottest = d
			}
		}
		hot = hottest.TemperatureC >= a.TempLimitC
	}
	now := a.now()
	switch {
	case !a.paused && hot:
		a.paused, a.since = true, now
		a.alert(Alert{Time: now, Kind: AlertTemperature, Active: true, Device: hottest.Index,
			TempC: hottest.TemperatureC, LimitC: a.TempLimitC,
			Message: fmt.Sprintf("GPU %d at %d°C reached the limit of %d°C: dispatch paused", hottest.Index, hottest.TemperatureC, a.TempLimitC)})
	case a.paused && (!a.usable(snap) || hottest.TemperatureC <= resume):
		a.paused = false
		msg := fmt.Sprintf("all GPUs at or below %d°C: dispatch resumed", resume)
		if !a.usable(snap) {
			msg = "GPU telemetry unavailable or stale: dispatch resumed"
		}
		a.alert(Alert{Time: now, Kind: AlertTemperature, Active: false, Device: hottest.Index,
			TempC: hottest.TemperatureC, LimitC: resume, Paused: now.Sub(a.since), Message: msg})
	}
	return a.paused
}

func (a *Admission) alert(al Alert) {
	if a.OnAlert != nil {
		a.OnAlert(al)
	}
}
