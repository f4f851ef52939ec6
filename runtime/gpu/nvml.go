//go:build linux && cgo

package gpu

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/warden-llm/warden/internal/proc"
)

// NVML samples GPUs through the NVIDIA management library.
//
// The library is initialised once, on the first Init or Sample. If that
// fails (no driver: ERROR_LIBRARY_NOT_FOUND and the like) every later Sample
// returns an error wrapping ErrNoGPU without touching the library again: its
// symbols are linked with unresolved symbols ignored, so calling a device
// function after a failed Init would crash the process.
type NVML struct {
	lib  nvml.Interface
	pgid func() int

	// procPGID returns the process group of pid; tests may replace it.
	procPGID func(pid int) (int, error)
	now      func() time.Time

	mu      sync.Mutex
	state   initState
	initErr error
}

type initState int

const (
	notInitialised initState = iota
	initialised
	initFailed
	shutDown
)

var _ Sampler = (*NVML)(nil)

// NewNVML returns a sampler over lib (nvml.New() for the real library).
// pgid returns the backend's process group; it returns 0 in attach mode, when
// there is no group to attribute VRAM to. A nil pgid means attach mode.
func NewNVML(lib nvml.Interface, pgid func() int) *NVML {
	if pgid == nil {
		pgid = func() int { return 0 }
	}
	return &NVML{lib: lib, pgid: pgid, procPGID: procPGID, now: time.Now}
}

// NewSystemNVML returns a sampler over this machine's NVIDIA library. Where
// it cannot be built (not Linux, or cgo off) it is a stub whose every call
// reports ErrNoGPU.
func NewSystemNVML(pgid func() int) *NVML { return NewNVML(nvml.New(), pgid) }

// Init initialises the library once. Its error wraps ErrNoGPU and is sticky:
// later calls return it again without calling the library.
func (n *NVML) Init() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.initLocked()
}

func (n *NVML) initLocked() error {
	switch n.state {
	case initialised:
		return nil
	case initFailed:
		return n.initErr
	case shutDown:
		return fmt.Errorf("%w: nvml shut down", ErrNoGPU)
	}
	if ret := n.lib.Init(); ret != nvml.SUCCESS {
		n.state = initFailed
		n.initErr = fmt.Errorf("%w: nvml init: %s", ErrNoGPU, describe(ret))
		return n.initErr
	}
	n.state = initialised
	return nil
}

// describe explains the Init failures a user can act on.
func describe(ret nvml.Return) string {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "NVIDIA management library (libnvidia-ml.so.1) not found (" + ret.Error() + ")"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "NVIDIA driver not loaded (" + ret.Error() + ")"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission to talk to the NVIDIA driver (" + ret.Error() + ")"
	}
	return ret.Error()
}

// Close shuts the library down if Init succeeded; after a failed Init it
// does nothing (the library was never loaded).
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != initialised {
		return nil
	}
	n.state = shutDown
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %s", ret.Error())
	}
	return nil
}

// Sample reads every device. It initialises the library on first use.
// A device field the driver cannot report is left zero and named in
// Device.Unavailable; only a failure to enumerate devices fails the sample.
func (n *NVML) Sample() (Snapshot, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.initLocked(); err != nil {
		return Snapshot{}, err
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Snapshot{}, fmt.Errorf("nvml device count: %s", ret.Error())
	}
	if count == 0 {
		return Snapshot{}, fmt.Errorf("%w: nvml reports no devices", ErrNoGPU)
	}
	snap := Snapshot{Time: n.now(), Devices: make([]Device, 0, count)}
	if pg := n.pgid(); pg > 0 {
		snap.Attributed, snap.PGID = true, pg
	}
	groups := map[int]bool{} // pid → in the backend's group, cached per sample
	for i := range count {
		dev, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return Snapshot{}, fmt.Errorf("nvml device %d handle: %s", i, ret.Error())
		}
		snap.Devices = append(snap.Devices, n.device(i, dev, snap.PGID, groups))
	}
	return snap, nil
}

func (n *NVML) device(i int, dev nvml.Device, pgid int, groups map[int]bool) Device {
	d := Device{Index: i}
	miss := func(field string, ret nvml.Return) bool {
		if ret == nvml.SUCCESS {
			return false
		}
		d.Unavailable = append(d.Unavailable, field)
		return true
	}
	var ret nvml.Return
	d.UUID, ret = dev.GetUUID()
	miss("uuid", ret)
	d.Name, ret = dev.GetName()
	miss("name", ret)
	if mem, ret := dev.GetMemoryInfo(); !miss("memory", ret) {
		d.MemoryUsed, d.MemoryTotal = mem.Used, mem.Total
	}
	if u, ret := dev.GetUtilizationRates(); !miss("utilization", ret) {
		d.GPUUtil, d.MemUtil = u.Gpu, u.Memory
	}
	d.TemperatureC, ret = dev.GetTemperature(nvml.TEMPERATURE_GPU)
	miss("temperature", ret)
	d.PowerMilliwatts, ret = dev.GetPowerUsage()
	miss("power", ret)
	if mask, ret := dev.GetCurrentClocksThrottleReasons(); !miss("throttle_reasons", ret) {
		d.ThrottleReasons = throttleReasons(mask)
	}
	if pgid <= 0 {
		return d // attach mode: nothing to attribute, so don't ask
	}
	procs, ret := dev.GetComputeRunningProcesses()
	if miss("processes", ret) {
		return d
	}
	for _, p := range procs {
		pid := int(p.Pid)
		in, ok := groups[pid]
		if !ok {
			g, err := n.procPGID(pid)
			in = err == nil && g == pgid
			groups[pid] = in
		}
		if !in {
			continue
		}
		used := p.UsedGpuMemory
		if used == valueNotAvailable {
			used = 0
		}
		d.Processes = append(d.Processes, Process{PID: pid, UsedMemory: used})
	}
	return d
}

// valueNotAvailable is NVML_VALUE_NOT_AVAILABLE for unsigned long long,
// reported as a process's memory where the driver cannot see it.
const valueNotAvailable = ^uint64(0)

// throttleNames maps NVML clock throttle reason bits to stable names.
var throttleNames = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksThrottleReasonGpuIdle, "gpu_idle"},
	{nvml.ClocksThrottleReasonApplicationsClocksSetting, "applications_clocks_setting"},
	{nvml.ClocksThrottleReasonSwPowerCap, "sw_power_cap"},
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksThrottleReasonSyncBoost, "sync_boost"},
	{nvml.ClocksThrottleReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
	{nvml.ClocksThrottleReasonDisplayClockSetting, "display_clock_setting"},
}

// throttleReasons names the bits set in mask, in bit order; unknown bits
// are named by their value.
func throttleReasons(mask uint64) []string {
	var out []string
	for _, t := range throttleNames {
		if mask&t.bit != 0 {
			out = append(out, t.name)
			mask &^= t.bit
		}
	}
	for bit := uint64(1); mask != 0; bit <<= 1 {
		if mask&bit != 0 {
			out = append(out, "0x"+strconv.FormatUint(bit, 16))
			mask &^= bit
		}
	}
	return out
}

// procPGID reads the process group of pid from /proc/<pid>/stat.
func procPGID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatPGID(b)
}

// parseStatPGID extracts the pgrp field from a /proc/<pid>/stat line.
func parseStatPGID(stat []byte) (int, error) {
	f, err := proc.ParseStat(stat)
	if err != nil {
		return 0, err
	}
	if len(f) < 3 {
		return 0, proc.ErrBadStat
	}
	g, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, fmt.Errorf("%w: pgrp %q", proc.ErrBadStat, f[2])
	}
	return g, nil
}
