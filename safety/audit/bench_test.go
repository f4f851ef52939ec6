package audit

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// BenchmarkAppend measures durable records/s (synchronous=FULL, group
// commit) with many parallel appenders, and the commit wait each Append
// sees.
func BenchmarkAppend(b *testing.B) {
	dir := b.TempDir()
	db := storetest.OpenDir(b, dir)
	w := startWriter(b, db, dir, Config{})
	var mu sync.Mutex
	var waits []time.Duration
	b.SetParallelism(32)
	b.ResetTimer()
	start, cpu0 := time.Now(), proc.CPUTime()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			t0 := time.Now()
			if _, err := w.Append(context.Background(), req(i)); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(t0))
			i++
		}
		mu.Lock()
		waits = append(waits, local...)
		mu.Unlock()
	})
	elapsed, cpu := time.Since(start), proc.CPUTime()-cpu0
	b.StopTimer()
	report(b, waits, elapsed, cpu, w)
}

// BenchmarkAppendSerial appends from one goroutine, so every record is a
// transaction of its own, as at one client: cpu-µs/record is what one
// audited request's record costs the machine.
func BenchmarkAppendSerial(b *testing.B) {
	dir := b.TempDir()
	db := storetest.OpenDir(b, dir)
	w := startWriter(b, db, dir, Config{})
	waits := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start, cpu0 := time.Now(), proc.CPUTime()
	for i := range b.N {
		t0 := time.Now()
		if _, err := w.Append(context.Background(), req(i)); err != nil {
			b.Fatal(err)
		}
		waits = append(waits, time.Since(t0))
	}
	elapsed, cpu := time.Since(start), proc.CPUTime()-cpu0
	b.StopTimer()
	report(b, waits, elapsed, cpu, w)
}

// BenchmarkAppendAt500PerSecond issues one Append every 2 ms, each from its
// own goroutine as requests would, and reports the commit wait. Run it
// with a fixed count, e.g. -benchtime=2500x (5 s).
func BenchmarkAppendAt500PerSecond(b *testing.B) {
	dir := b.TempDir()
	db := storetest.OpenDir(b, dir)
	w := startWriter(b, db, dir, Config{})
	waits := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	start, cpu0 := time.Now(), proc.CPUTime()
	for i := range b.N {
		<-tick.C
		wg.Go(func() {
			t0 := time.Now()
			if _, err := w.Append(context.Background(), req(i)); err != nil {
				b.Error(err)
			}
			waits[i] = time.Since(t0)
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), proc.CPUTime()-cpu0
	b.StopTimer()
	report(b, waits, elapsed, cpu, w)
}

func report(b *testing.B, waits []time.Duration, elapsed, cpu time.Duration, w *Writer) {
	if len(waits) == 0 {
		return
	}
	slices.Sort(waits)
	pct := func(p float64) float64 {
		return float64(waits[min(len(waits)-1, int(p*float64(len(waits))))].Microseconds()) / 1000
	}
	st := w.Stats()
	b.ReportMetric(float64(len(waits))/elapsed.Seconds(), "records/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(waits)), "cpu-µs/record")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Records)/float64(st.Commits), "records/commit")
	}
}

// BenchmarkVerify reports how fast Verify walks a chain of 20,000 records.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	db := storetest.OpenDir(b, dir)
	w := startWriter(b, db, dir, Config{})
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Go(func() {
			for i := range 500 {
				if _, err := w.Append(context.Background(), req(g*500+i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	w.Close(context.Background())
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(context.Background(), db, dir, nil)
		if err != nil || !rep.OK() || rep.Records != 20000 {
			b.Fatalf("verify: %+v, %v", rep, err)
		}
	}
	b.ReportMetric(20000*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
