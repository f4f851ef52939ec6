package gpu

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

func TestNVMLSampleReadsEveryField(t *testing.T) {
	f := newFakeGPU(t)
	f.set(3, func(s *fakeState) {
		s.used = 10 << 30
		s.util = nvml.Utilization{Gpu: 97, Memory: 55}
		s.tempC = 81
		s.powerMW = 312_500
		s.throttle = nvml.ClocksThrottleReasonSwThermalSlowdown | nvml.ClocksThrottleReasonSwPowerCap
	})
	n := NewNVML(f.server, func() int { return syscall.Getpgrp() })
	defer n.Close()

	snap, err := n.Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	if got, want := len(snap.Devices), 8; got != want {
		t.Fatalf("devices = %d, want %d", got, want)
	}
	if snap.Time.IsZero() {
		t.Errorf("snapshot time is zero")
	}
	for i, d := range snap.Devices {
		if d.Index != i || d.UUID != f.uuid(i) || d.Name != "Mock NVIDIA A100-SXM4-40GB" {
			t.Errorf("device %d = index %d uuid %q name %q, want the fake's", i, d.Index, d.UUID, d.Name)
		}
		if d.MemoryTotal != 40<<30 {
			t.Errorf("device %d total = %d, want 40 GiB", i, d.MemoryTotal)
		}
		if len(d.Unavailable) != 0 {
			t.Errorf("device %d unavailable = %v, want none", i, d.Unavailable)
		}
	}
	d := snap.Devices[3]
	want := Device{Index: 3, UUID: f.uuid(3), Name: d.Name, MemoryUsed: 10 << 30, MemoryTotal: 40 << 30,
		GPUUtil: 97, MemUtil: 55, TemperatureC: 81, PowerMilliwatts: 312_500,
		ThrottleReasons: []string{"sw_power_cap", "sw_thermal_slowdown"}}
	if !equalDevice(d, want) {
		t.Errorf("device 3 = %+v\nwant       %+v", d, want)
	}
	if got, want := d.MemoryFree(), uint64(30<<30); got != want {
		t.Errorf("free = %d, want %d", got, want)
	}
	// Every function Sample calls was set by the fake (unset ones panic);
	// prove each was actually reached, once per device.
	for _, call := range []string{"GetMemoryInfo", "GetUtilizationRates", "GetTemperature",
		"GetPowerUsage", "GetCurrentClocksThrottleReasons", "GetComputeRunningProcesses"} {
		if got := f.count(call); got != 8 {
			t.Errorf("%s called %d times, want 8", call, got)
		}
	}
}

func equalDevice(a, b Device) bool {
	return a.Index == b.Index && a.UUID == b.UUID && a.Name == b.Name &&
		a.MemoryUsed == b.MemoryUsed && a.MemoryTotal == b.MemoryTotal &&
		a.GPUUtil == b.GPUUtil && a.MemUtil == b.MemUtil && a.TemperatureC == b.TemperatureC &&
		a.PowerMilliwatts == b.PowerMilliwatts && slices.Equal(a.ThrottleReasons, b.ThrottleReasons) &&
		slices.Equal(a.Processes, b.Processes) && slices.Equal(a.Unavailable, b.Unavailable)
}

func TestNVMLProcessesFilteredByPGID(t *testing.T) {
	self, group := os.Getpid(), syscall.Getpgrp()
	gone := 1 << 30 // beyond pid_max: no such process
	if _, err := os.Stat("/proc/" + strconv.Itoa(gone)); err == nil {
		t.Fatalf("pid %d unexpectedly exists", gone)
	}
	procs := []nvml.ProcessInfo{
		{Pid: uint32(self), UsedGpuMemory: 6 << 30},
		{Pid: uint32(gone), UsedGpuMemory: 1 << 30},
	}
	wantOthers := 0
	if g, err := syscall.Getpgid(1); err == nil && g != group {
		procs = append(procs, nvml.ProcessInfo{Pid: 1, UsedGpuMemory: 2 << 30}) // exists, other group
		wantOthers = 1
	}
	t.Logf("self pid %d group %d; other-group process included: %v", self, group, wantOthers == 1)

	f := newFakeGPU(t)
	f.set(0, func(s *fakeState) { s.procs = procs })
	f.set(1, func(s *fakeState) { s.procs = procs[1:] })

	t.Run("backend group", func(t *testing.T) {
		snap, err := NewNVML(f.server, func() int { return group }).Sample()
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if !snap.Attributed || snap.PGID != group {
			t.Errorf("attributed = %v pgid %d, want true %d", snap.Attributed, snap.PGID, group)
		}
		want := []Process{{PID: self, UsedMemory: 6 << 30}}
		if got := snap.Devices[0].Processes; !slices.Equal(got, want) {
			t.Errorf("device 0 processes = %v, want %v", got, want)
		}
		if got := snap.Devices[1].Processes; len(got) != 0 {
			t.Errorf("device 1 processes = %v, want none (other groups only)", got)
		}
	})
	t.Run("attach mode", func(t *testing.T) {
		before := f.count("GetComputeRunningProcesses")
		snap, err := NewNVML(f.server, func() int { return 0 }).Sample()
		if err != nil {
			t.Fatalf("Sample: %v", err)
		}
		if snap.Attributed {
			t.Errorf("attributed = true in attach mode")
		}
		for _, d := range snap.Devices {
			if len(d.Processes) != 0 {
				t.Errorf("device %d processes = %v, want none in attach mode", d.Index, d.Processes)
			}
		}
		if got := f.count("GetComputeRunningProcesses"); got != before {
			t.Errorf("processes queried %d times in attach mode, want 0", got-before)
		}
	})
}

func TestNVMLUnsupportedFieldLeavesRestOfDevice(t *testing.T) {
	f := newFakeGPU(t)
	f.set(5, func(s *fakeState) { s.failTemp = true; s.powerMW = 123 })
	snap, err := NewNVML(f.server, nil).Sample()
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	d := snap.Devices[5]
	if !slices.Equal(d.Unavailable, []string{"temperature"}) || d.TemperatureC != 0 || d.PowerMilliwatts != 123 {
		t.Errorf("device 5 = unavailable %v temp %d power %d, want [temperature] 0 123", d.Unavailable, d.TemperatureC, d.PowerMilliwatts)
	}
}

// TestNVMLFailedInitNeverTouchesDevices uses a fake whose Init fails and
// whose device and shutdown functions are unset: calling any of them panics.
func TestNVMLFailedInitNeverTouchesDevices(t *testing.T) {
	s := dgxa100.New()
	inits := 0
	s.InitFunc = func() nvml.Return { inits++; return nvml.ERROR_LIBRARY_NOT_FOUND }
	s.DeviceGetCountFunc = nil
	s.DeviceGetHandleByIndexFunc = nil
	s.ShutdownFunc = nil
	n := NewNVML(s, nil)
	for range 3 {
		_, err := n.Sample()
		if !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "ERROR_LIBRARY_NOT_FOUND") {
			t.Fatalf("Sample error = %v, want ErrNoGPU with ERROR_LIBRARY_NOT_FOUND", err)
		}
	}
	if err := n.Init(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Init error = %v, want ErrNoGPU", err)
	}
	if inits != 1 {
		t.Errorf("library Init called %d times, want 1", inits)
	}
	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestNVMLNoDevicesIsNoGPU(t *testing.T) {
	s := dgxa100.New()
	s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.SUCCESS }
	s.DeviceGetHandleByIndexFunc = nil
	if _, err := NewNVML(s, nil).Sample(); !errors.Is(err, ErrNoGPU) {
		t.Errorf("Sample error = %v, want ErrNoGPU", err)
	}
}

func TestParseStatPGID(t *testing.T) {
	tests := []struct {
		name, stat string
		want       int
		wantErr    bool
	}{
		{"plain", "1234 (ollama) S 1 1200 1200 0 -1 4194560", 1200, false},
		{"comm with spaces and parens", "77 (a) b (c) ) R 5 66 66 0", 66, false},
		{"no paren", "77 ollama S 1 66", 0, true},
		{"truncated", "77 (x) S 1", 0, true},
		{"not a number", "77 (x) S 1 abc", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatPGID([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatPGID(%q) = %d, %v; want %d, err %v", tt.stat, got, err, tt.want, tt.wantErr)
			}
		})
	}
	got, err := procPGID(os.Getpid())
	if err != nil || got != syscall.Getpgrp() {
		t.Errorf("procPGID(self) = %d, %v; want %d", got, err, syscall.Getpgrp())
	}
}

func TestThrottleReasons(t *testing.T) {
	tests := []struct {
		mask uint64
		want []string
	}{
		{0, nil},
		{nvml.ClocksThrottleReasonGpuIdle, []string{"gpu_idle"}},
		{nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown,
			[]string{"hw_thermal_slowdown", "hw_power_brake_slowdown"}},
		{1 << 12, []string{"0x1000"}},
	}
	for _, tt := range tests {
		if got := throttleReasons(tt.mask); !slices.Equal(got, tt.want) {
			t.Errorf("throttleReasons(%#x) = %v, want %v", tt.mask, got, tt.want)
		}
	}
}
