//go:build !linux || !cgo

package gpu

import "fmt"

// NVML is a stub where go-nvml cannot be built (not Linux, or cgo off): it
// reports ErrNoGPU, as on a Linux machine without the NVIDIA driver.
type NVML struct{}

var _ Sampler = (*NVML)(nil)

// errStub is the stub's reason.
var errStub = fmt.Errorf("%w: this warden was built without NVML (it needs linux and cgo)", ErrNoGPU)

// NewSystemNVML returns the stub; pgid is unused.
func NewSystemNVML(pgid func() int) *NVML { return &NVML{} }

// Init reports ErrNoGPU.
func (*NVML) Init() error { return errStub }

// Close does nothing.
func (*NVML) Close() error { return nil }

// Sample reports ErrNoGPU.
func (*NVML) Sample() (Snapshot, error) { return Snapshot{}, errStub }
