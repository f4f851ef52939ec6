//go:build linux && cgo

package gpu

import (
	"sync"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// fakeGPU is the dgxa100 mock server with the function fields it leaves
// unset (utilization, temperature, power, throttle reasons, processes) set
// from per-device state a test can change while a Monitor samples. Every
// call is counted by name, so a test can prove which functions Sample uses.
type fakeGPU struct {
	server *dgxa100.Server

	mu    sync.Mutex
	state []fakeState
	calls map[string]int
}

type fakeState struct {
	used     uint64
	util     nvml.Utilization
	tempC    uint32
	powerMW  uint32
	throttle uint64
	procs    []nvml.ProcessInfo
	failTemp bool // GetTemperature returns ERROR_NOT_SUPPORTED
}

// newFakeGPU returns the eight-device fake with every device idle and cool.
func newFakeGPU(t *testing.T) *fakeGPU {
	t.Helper()
	f := &fakeGPU{server: dgxa100.New(), calls: map[string]int{}}
	for i, d := range f.server.Devices {
		dev := d.(*dgxa100.Device)
		f.state = append(f.state, fakeState{tempC: 40, powerMW: 60_000, util: nvml.Utilization{Gpu: 1, Memory: 2}})
		// Memory comes from the fake's own GetMemoryInfoFunc; wrap it so the
		// used bytes follow our state.
		orig := dev.GetMemoryInfoFunc
		dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
			m, ret := orig()
			s := f.get(i, "GetMemoryInfo")
			m.Used, m.Free = s.used, m.Total-s.used
			return m, ret
		}
		dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return f.get(i, "GetUtilizationRates").util, nvml.SUCCESS
		}
		dev.GetTemperatureFunc = func(sensor nvml.TemperatureSensors) (uint32, nvml.Return) {
			s := f.get(i, "GetTemperature")
			if sensor != nvml.TEMPERATURE_GPU {
				t.Errorf("GetTemperature(%v), want TEMPERATURE_GPU", sensor)
			}
			if s.failTemp {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			return s.tempC, nvml.SUCCESS
		}
		dev.GetPowerUsageFunc = func() (uint32, nvml.Return) {
			return f.get(i, "GetPowerUsage").powerMW, nvml.SUCCESS
		}
		dev.GetCurrentClocksThrottleReasonsFunc = func() (uint64, nvml.Return) {
			return f.get(i, "GetCurrentClocksThrottleReasons").throttle, nvml.SUCCESS
		}
		dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			return f.get(i, "GetComputeRunningProcesses").procs, nvml.SUCCESS
		}
	}
	return f
}

func (f *fakeGPU) get(i int, call string) fakeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[call]++
	return f.state[i]
}

// set changes device i's state.
func (f *fakeGPU) set(i int, fn func(*fakeState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.state[i])
}

func (f *fakeGPU) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

func (f *fakeGPU) uuid(i int) string { return f.server.Devices[i].(*dgxa100.Device).UUID }
