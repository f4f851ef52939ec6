package main

import (
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
