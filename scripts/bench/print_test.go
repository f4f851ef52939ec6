package main

import (
	"os"
	"strings"
	"testing"
)

func cell(stream bool, clients int, ratio, added float64) cellResult {
	c := cellResult{Stream: stream, Clients: clients}
	c.Summary.Ratio.Median = ratio
	c.Summary.AddedP50Ms.Median = added
	return c
}

// TestVerdicts: one line per cell against issue 17's goal, the added p50
// judged at one client only, the stock cells against stock Ollama, and a
// closing count.
func TestVerdicts(t *testing.T) {
	r := &report{
		Cells: []cellResult{
			cell(false, 1, 0.97, 0.8),
			cell(false, 8, 0.94, 9), // a high added p50 at 8 clients is not judged
			cell(true, 1, 0.99, 1.2),
		},
		StockCells: []cellResult{cell(false, 1, 1.4, 0), cell(false, 32, 0.9, 0)},
	}
	got := verdicts(r)
	want := []string{
		"stream=false clients=1   0.970× direct (≥ 0.95) ok, added p50 +0.80ms (≤ 1.0ms) ok",
		"stream=false clients=8   0.940× direct (≥ 0.95) MISS",
		"stream=true  clients=1   0.990× direct (≥ 0.95) ok, added p50 +1.20ms (≤ 1.0ms) MISS",
		"stock        clients=1   1.400× stock ollama (≥ 1.00) ok",
		"stock        clients=32  0.900× stock ollama (≥ 1.00) MISS",
		"goal missed: 3 of 7 MISS",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	r = &report{Cells: []cellResult{cell(false, 1, 0.95, 1.0), cell(false, 32, 1.1, 40)}}
	if got := verdicts(r); got[len(got)-1] != "goal met: 3 of 3 ok" || strings.Contains(strings.Join(got, "\n"), "MISS") {
		t.Errorf("at the targets exactly: %q, want the goal met", got)
	}
	if got := verdicts(&report{}); len(got) != 1 || got[0] != "nothing measured" {
		t.Errorf("empty report: %q", got)
	}
}

// TestAuditLines: the one-client added p50 with the audit database in
// memory next to the one on disk, and their difference.
func TestAuditLines(t *testing.T) {
	r := &report{
		Cells:            []cellResult{cell(false, 1, 1, 1.5), cell(false, 8, 1, 3)},
		AuditMemoryCells: []cellResult{cell(false, 1, 1, 0.4), cell(true, 1, 1, 0.6)},
	}
	want := []string{
		"added p50 at 1 client, stream=false: audit in memory +0.40ms, audit on disk +1.50ms: the durable audit costs +1.10ms",
		"added p50 at 1 client, stream=true : audit in memory +0.60ms",
	}
	if got := auditLines(r); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestVerdictsNameBareProxy: a cell's verdict line names the bare proxy's
// ratio in the same cell (and its added p50 at one client), unjudged.
func TestVerdictsNameBareProxy(t *testing.T) {
	r := &report{
		Cells:          []cellResult{cell(false, 1, 0.8, 0.9), cell(false, 8, 0.75, 5)},
		BareProxyCells: []cellResult{cell(false, 1, 0.91, 0.3), cell(false, 8, 0.88, 1)},
	}
	want := []string{
		"stream=false clients=1   0.800× direct (≥ 0.95) MISS, added p50 +0.90ms (≤ 1.0ms) ok; bare proxy 0.910×, +0.30ms",
		"stream=false clients=8   0.750× direct (≥ 0.95) MISS; bare proxy 0.880×",
		"goal missed: 2 of 3 MISS",
	}
	if got := verdicts(r); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCPUPerRequest: this process's own CPU time grows with work it does,
// and a side's CPU per request is the difference over its requests.
func TestCPUPerRequest(t *testing.T) {
	pid := os.Getpid()
	before := sampleCPU(pid)
	if before.box <= 0 {
		t.Fatalf("sample %+v: /proc/stat gave no busy time", before)
	}
	x := 0
	// Work until /proc shows 50ms more (bounded: a parser that always
	// reads 0 fails below instead of spinning).
	for n, after := 0, before; n < 5000 && after.proc < before.proc+0.05; n, after = n+1, sampleCPU(pid) {
		for i := range 1 << 20 {
			x += i
		}
	}
	after := sampleCPU(pid)
	r := sideResult{Requests: 10}
	r.cpuPerRequest(before, after, pid)
	// The machine's counters and the process's tick separately (10 ms
	// each): the machine's may trail the process's by up to two ticks.
	const slack = 2 * 1000.0 / clockTicks / 10 // ms per request
	if r.OwnCPUMs < 5 || r.BoxCPUMs < r.OwnCPUMs-slack {
		t.Errorf("per request: own %.2fms, box %.2fms; want own ≥ 5ms (50ms over 10) and box ≥ own−%.0fms (x %d)", r.OwnCPUMs, r.BoxCPUMs, slack, x)
	}
	var none sideResult
	none.cpuPerRequest(before, after, pid)
	if none.BoxCPUMs != 0 || none.OwnCPUMs != 0 {
		t.Errorf("no requests: %+v, want no CPU figures", none)
	}
}

// TestSummarizeJudgesAgainstItsTarget: the same ratio is a pass against
// direct Ollama's target and a miss against stock Ollama's, in the table
// as in the verdict.
func TestSummarizeJudgesAgainstItsTarget(t *testing.T) {
	c := cellResult{Clients: 8, Reps: []repResult{
		{Warden: sideResult{ReqPerS: 96}, Direct: sideResult{ReqPerS: 100}},
		{Warden: sideResult{ReqPerS: 97}, Direct: sideResult{ReqPerS: 100}},
	}}
	summarize(&c, targetRatio)
	if !c.Summary.RatioOK {
		t.Errorf("ratio %.3f against %.2f: not ok", c.Summary.Ratio.Median, targetRatio)
	}
	summarize(&c, targetStock)
	if c.Summary.RatioOK {
		t.Errorf("ratio %.3f against %.2f: ok", c.Summary.Ratio.Median, targetStock)
	}
}
