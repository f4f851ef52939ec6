// Package gpu watches the GPUs the backend runs on and decides when the
// hardware can take more work.
//
// A Sampler reads one Snapshot of every device (NVML in production, a fake in
// tests); a Monitor samples it on an interval in one owned goroutine and keeps
// the latest snapshot; Admission turns a snapshot into decisions: whether a
// model load fits in free VRAM and whether dispatch must pause because a GPU is
// too hot. On a machine without the NVIDIA library the Monitor reports "no GPU"
// once and Admission always allows.
package gpu

import (
	"errors"
	"time"
)

// ErrNoGPU reports that there is no usable GPU: the NVIDIA management library
// is missing, failed to initialise, or reports no devices. It is permanent for
// the life of a Sampler.
var ErrNoGPU = errors.New("no GPU")

// Sampler reads the current state of every GPU.
type Sampler interface {
	Sample() (Snapshot, error)
}

// Snapshot is the state of every GPU at one instant. Memory is in bytes,
// utilization in percent. A Snapshot is never modified once a Sampler has
// returned it, so it may be shared read-only.
type Snapshot struct {
	Time    time.Time `json:"time"`
	Devices []Device  `json:"devices"`
	// Attributed reports whether per-process VRAM was attributed to the
	// backend's process group. It is false in attach mode (Warden did not
	// start the backend, so it has no process group to look for); then every
	// Device.Processes is empty.
	Attributed bool `json:"attributed"`
	// PGID is the backend's process group the processes were filtered by
	// (0 when not Attributed).
	PGID int `json:"pgid,omitempty"`
}

// Device is the state of one GPU.
type Device struct {
	Index           int    `json:"index"`
	UUID            string `json:"uuid"`
	Name            string `json:"name"`
	MemoryUsed      uint64 `json:"memory_used_bytes"`
	MemoryTotal     uint64 `json:"memory_total_bytes"`
	GPUUtil         uint32 `json:"gpu_util_percent"`
	MemUtil         uint32 `json:"memory_util_percent"`
	TemperatureC    uint32 `json:"temperature_c"`
	PowerMilliwatts uint32 `json:"power_milliwatts"`
	// ThrottleReasons names the active clock throttle reasons, such as
	// "sw_thermal_slowdown"; empty when the clocks are not held back.
	ThrottleReasons []string `json:"throttle_reasons,omitempty"`
	// Processes are the backend's processes using this GPU (only those in
	// the backend's process group).
	Processes []Process `json:"processes,omitempty"`
	// Unavailable names the fields the driver could not report for this
	// device (for example "power" on boards without a power sensor); those
	// fields are zero.
	Unavailable []string `json:"unavailable,omitempty"`
}

// MemoryFree is the VRAM not in use, in bytes.
func (d Device) MemoryFree() uint64 {
	if d.MemoryUsed >= d.MemoryTotal {
		return 0
	}
	return d.MemoryTotal - d.MemoryUsed
}

// Process is one process's use of a GPU.
type Process struct {
	PID        int    `json:"pid"`
	UsedMemory uint64 `json:"used_memory_bytes"`
}
