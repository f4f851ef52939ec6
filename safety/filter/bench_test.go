package filter

import (
	"testing"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

func builtinEngine(b *testing.B) *Engine {
	ps, err := BuildProfiles(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Profiles: ps, Detectors: Detectors(DetectorOptions{}), Secret: []byte("k"), RepeatWindow: -1})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkEngine scans the fixed 1 MB corpus (detecttest.BenchText) with the default profile and the
// full detector set, whole (as a prompt) and streamed in 4-byte pieces (as
// an answer comes from a model), reporting MB/s, the time added per piece
// and the longest hold-back.
func BenchmarkEngine(b *testing.B) {
	text := string(detecttest.BenchText())
	e := builtinEngine(b)
	b.Run("whole", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		start := proc.CPUTime()
		for b.Loop() {
			r, _ := e.Request("")
			r.Scan(Output, text)
		}
		detecttest.ReportCPU(b, proc.CPUTime()-start, []byte(text), len(text))
	})
	// prompt: the same text as a prompt, which the whole-text detectors
	// (the injection classifier) read in full, not its first 64 KiB.
	b.Run("prompt", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		start := proc.CPUTime()
		for b.Loop() {
			r, _ := e.Request("")
			r.Scan(Input, text)
		}
		detecttest.ReportCPU(b, proc.CPUTime()-start, []byte(text), len(text))
	})
	b.Run("stream4", func(b *testing.B) {
		const piece = 4
		part := text[:256<<10]
		b.SetBytes(int64(len(part)))
		hold := 0
		start := proc.CPUTime()
		for b.Loop() {
			r, _ := e.Request("")
			s := r.Output()
			for i := 0; i < len(part); i += piece {
				s.Write(part[i:min(i+piece, len(part))])
			}
			s.Close()
			hold = max(hold, s.MaxHold())
		}
		used := proc.CPUTime() - start
		pieces := float64(b.N) * float64(len(part)/piece)
		b.ReportMetric(float64(b.Elapsed())/pieces, "ns/piece")
		b.ReportMetric(float64(used)/pieces, "cpu-ns/piece")
		detecttest.ReportCPU(b, used, []byte(text), len(part))
		b.ReportMetric(float64(hold), "max-hold-bytes")
	})
}

// BenchmarkDetectors scans the 1 MB corpus with each built-in detector on
// its own (Find over the whole text, as for a prompt) and reports, besides
// wall-clock MB/s, throughput per CPU second and the ratio of the
// detector's CPU time to a baseline loop (one table lookup per byte over
// the same text) measured in the same run: on a loaded machine the wall
// clock mostly measures the neighbours, the ratio stays put.
func BenchmarkDetectors(b *testing.B) {
	text := detecttest.BenchText()
	ds, err := Detectors(DetectorOptions{})()
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, find func()) {
		b.SetBytes(int64(len(text)))
		start := proc.CPUTime()
		for b.Loop() {
			find()
		}
		detecttest.ReportCPU(b, proc.CPUTime()-start, text, len(text))
	}
	b.Run("baseline", func(b *testing.B) {
		run(b, func() { detecttest.BaselineCPU(text, 1) })
	})
	for _, d := range ds {
		b.Run(d.Category(), func(b *testing.B) {
			run(b, func() { d.Find(text, 0, func(detect.Match) {}) })
		})
	}
	// raw: the detectors that read the raw text (detect.Raw), each on
	// its own pass; shared: the same through one shared scan of the
	// special bytes, as the engine runs them.
	var raw []detect.Detector
	for _, d := range ds {
		if _, ok := d.(detect.Raw); ok {
			raw = append(raw, d)
		}
	}
	b.Run("raw", func(b *testing.B) {
		run(b, func() {
			for _, d := range raw {
				d.Find(text, 0, func(detect.Match) {})
			}
		})
	})
	b.Run("raw-shared", func(b *testing.B) {
		var sp detect.Specials
		run(b, func() {
			sp.Scan(text)
			for _, d := range raw {
				d.(detect.SpecialFinder).FindSpecial(text, 0, &sp, func(detect.Match) {})
			}
		})
	})
	b.Run("all", func(b *testing.B) {
		run(b, func() {
			for _, d := range ds {
				d.Find(text, 0, func(detect.Match) {})
			}
		})
	})
	b.Run("engine", func(b *testing.B) {
		e := builtinEngine(b)
		s := string(text)
		run(b, func() {
			r, _ := e.Request("")
			r.Scan(Output, s)
		})
	})
}
