package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

func printHeader(w io.Writer, r *report) {
	fmt.Fprintf(w, "warden bench  %s  %s/%s  %d CPUs", r.Started.Format(time.RFC3339), r.GOOS, r.GOARCH, r.CPUs)
	if r.LoadAvg != "" {
		fmt.Fprintf(w, "  loadavg %s", r.LoadAvg)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "warden  %s\ndirect  %s\n", r.Warden, r.Direct)
	per := fmt.Sprintf("%gs", r.DurationS)
	if r.Requests > 0 {
		per = fmt.Sprintf("%d requests", r.Requests)
	}
	fmt.Fprintf(w, "model %s, max_tokens %d; %d A/B reps per cell (order alternating), %s per side per rep, %gs warm-up\n",
		r.Model, r.MaxTokens, r.Reps, per, r.WarmupS)
	fmt.Fprintf(w, "target: throughput ratio ≥ %.2f, added p50 ≤ %.1fms at one client; values are medians across reps, [min max] the spread\n",
		r.TargetRatio, r.TargetAdded)
}

// printTable prints one stream mode's cells, benchstat-like: gw is the
// gateway measured (warden, or the bare proxy), other what it is held
// against.
func printTable(w io.Writer, gw, other string, stream bool, cells []cellResult) {
	if len(cells) == 0 {
		return
	}
	fmt.Fprintf(w, "\nstream=%t\n", stream)
	fmt.Fprintf(w, "%7s │ %-28s │ %-28s │ %-27s │ %s\n", "", centre(other, 28), centre(gw, 28),
		centre(gw+"/"+other+" req/s", 27), "added p50 ("+gw+"−"+other+")")
	fmt.Fprintf(w, "%7s │ %8s %9s %9s │ %8s %9s %9s │ %-27s │\n", "clients", "req/s", "p50", "p99", "req/s", "p50", "p99", "")
	for _, c := range cells {
		s := c.Summary
		fmt.Fprintf(w, "%7d │ %8.2f %9s %9s │ %8.2f %9s %9s │ %-27s │ %s\n", c.Clients,
			s.Direct.ReqPerS, fmtMs(s.Direct.P50Ms), fmtMs(s.Direct.P99Ms),
			s.Warden.ReqPerS, fmtMs(s.Warden.P50Ms), fmtMs(s.Warden.P99Ms),
			fmt.Sprintf("%.3f [%.3f %.3f] %s", s.Ratio.Median, s.Ratio.Min, s.Ratio.Max, verdict(s.RatioOK)),
			fmt.Sprintf("%+.2fms [%+.2f %+.2f] %s", s.AddedP50Ms.Median, s.AddedP50Ms.Min, s.AddedP50Ms.Max, p50Verdict(c)))
	}
	var reqs, conns, box, own []string
	for _, c := range cells {
		s := c.Summary
		reqs = append(reqs, fmt.Sprintf("%d: %d/%d", c.Clients, s.Direct.Requests, s.Warden.Requests))
		conns = append(conns, fmt.Sprintf("%d: %d/%d", c.Clients, s.Direct.NewConns, s.Warden.NewConns))
		if s.Direct.BoxCPUMs > 0 && s.Warden.BoxCPUMs > 0 {
			box = append(box, fmt.Sprintf("%d: %.2f/%.2f (%.2f)", c.Clients, s.Direct.BoxCPUMs, s.Warden.BoxCPUMs,
				s.Direct.BoxCPUMs/s.Warden.BoxCPUMs))
		}
		if s.Warden.OwnCPUMs > 0 {
			own = append(own, fmt.Sprintf("%d: %.2f", c.Clients, s.Warden.OwnCPUMs))
		}
	}
	fmt.Fprintf(w, "requests measured, %s/%s (all reps): %s\n", other, gw, strings.Join(reqs, ", "))
	fmt.Fprintf(w, "new connections, %s/%s (all reps):  %s\n", other, gw, strings.Join(conns, ", "))
	if len(box) > 0 {
		// When the machine is the bottleneck (every core busy), the
		// throughput ratio cannot beat the ratio of CPU per request.
		fmt.Fprintf(w, "CPU ms per request, whole machine, %s/%s (ratio): %s\n", other, gw, strings.Join(box, ", "))
	}
	if len(own) > 0 {
		fmt.Fprintf(w, "CPU ms per request, %s's own process: %s\n", gw, strings.Join(own, ", "))
	}
	errs := 0
	for _, c := range cells {
		for _, d := range c.Summary.errorDetail {
			if errs == 0 {
				fmt.Fprintln(w, "ERRORS:")
			}
			errs++
			fmt.Fprintf(w, "  clients %d %s\n", c.Clients, d)
		}
	}
	if errs == 0 {
		fmt.Fprintln(w, "errors: none")
	}
}

// p50Verdict judges the added p50 where the goal sets it: one client.
func p50Verdict(c cellResult) string {
	if c.Clients != 1 {
		return ""
	}
	return verdict(c.Summary.AddedP50OK)
}

// verdicts is one line per cell against the goal: the direct cells'
// throughput ratio (and, at one client, added p50), the stock cells'
// ratio, and a last line counting the misses.
func verdicts(r *report) []string {
	var lines []string
	miss, judged := 0, 0
	judge := func(ok bool) string {
		judged++
		if !ok {
			miss++
		}
		return verdict(ok)
	}
	for _, c := range r.Cells {
		s := c.Summary
		line := fmt.Sprintf("stream=%-5t clients=%-3d %.3f× direct (≥ %.2f) %s", c.Stream, c.Clients,
			s.Ratio.Median, targetRatio, judge(s.Ratio.Median >= targetRatio))
		if c.Clients == 1 {
			line += fmt.Sprintf(", added p50 %s (≤ %.1fms) %s", fmtAdded(s.AddedP50Ms.Median), targetAddedP50,
				judge(s.AddedP50Ms.Median <= targetAddedP50))
		}
		for _, b := range r.BareProxyCells {
			if b.Stream == c.Stream && b.Clients == c.Clients {
				line += fmt.Sprintf("; bare proxy %.3f×", b.Summary.Ratio.Median)
				if c.Clients == 1 {
					line += fmt.Sprintf(", %s", fmtAdded(b.Summary.AddedP50Ms.Median))
				}
			}
		}
		lines = append(lines, line)
	}
	for _, c := range r.StockCells {
		s := c.Summary
		lines = append(lines, fmt.Sprintf("stock        clients=%-3d %.3f× stock ollama (≥ %.2f) %s", c.Clients,
			s.Ratio.Median, targetStock, judge(s.Ratio.Median >= targetStock)))
	}
	switch {
	case judged == 0:
		lines = append(lines, "nothing measured")
	case miss == 0:
		lines = append(lines, fmt.Sprintf("goal met: %d of %d ok", judged, judged))
	default:
		lines = append(lines, fmt.Sprintf("goal missed: %d of %d MISS", miss, judged))
	}
	return lines
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func centre(s string, width int) string {
	pad := width - len(s)
	if pad <= 0 {
		return s
	}
	return strings.Repeat(" ", pad/2) + s
}

func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.3fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}

func printJSON(w io.Writer, r *report) {
	fmt.Fprintln(w)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
}

// loadAvg is the 1/5/15-minute load average where the system reports it,
// to judge how quiet the machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
