package probe

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Change is one metric of one category, now and in the previous run of
// the same model. Every metric is a rate where higher is worse, so a
// positive Delta is a step back.
type Change struct {
	Category string  `json:"category"`
	Metric   string  `json:"metric"`
	Now      Rate    `json:"now"`
	Before   *Rate   `json:"before,omitempty"`
	Delta    float64 `json:"delta"`
}

// Compare lists the metrics of cur, each with its value in prev (nil prev:
// no earlier run).
func Compare(cur []CategoryResult, prev []CategoryResult) []Change {
	before := map[string]Rate{}
	for _, c := range prev {
		for m, r := range c.Metrics {
			before[c.Category+"\x00"+m] = r
		}
	}
	var out []Change
	for _, c := range cur {
		names := make([]string, 0, len(c.Metrics))
		for m := range c.Metrics {
			names = append(names, m)
		}
		sort.Strings(names)
		for _, m := range names {
			ch := Change{Category: c.Category, Metric: m, Now: c.Metrics[m]}
			if b, ok := before[c.Category+"\x00"+m]; ok && b.N > 0 {
				ch.Before = &b
				ch.Delta = ch.Now.Rate - b.Rate
			}
			out = append(out, ch)
		}
	}
	return out
}

// Regressions are the changes whose rate rose by more than threshold
// (an absolute difference of rates, e.g. 0.1 = ten points).
func Regressions(changes []Change, threshold float64) []Change {
	var out []Change
	for _, c := range changes {
		if c.Before != nil && c.Delta > threshold+1e-12 {
			out = append(out, c)
		}
	}
	return out
}

// Report is what `warden probe report` prints.
type Report struct {
	Run      RunInfo  `json:"run"`
	Previous *RunInfo `json:"previous,omitempty"`
	Changes  []Change `json:"changes"`
}

// WriteText prints r as a table per category.
func (r Report) WriteText(w io.Writer) error {
	run := r.Run
	fmt.Fprintf(w, "probe run %d: suite %s (sha256 %.12s), model %s (digest %.19s), seed %d, %s\n",
		run.ID, run.Suite, run.SuiteSHA256, run.Model, orDash(run.ModelDigest), run.Seed, run.Started.Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(w, "%d probes: %d pass, %d fail, %d error; guard labels: %s\n", run.Count, run.Passed, run.Failed, run.Errors, run.Guard)
	if r.Previous != nil {
		fmt.Fprintf(w, "compared with run %d (%s)\n", r.Previous.ID, r.Previous.Started.Format("2006-01-02 15:04:05Z"))
	} else {
		fmt.Fprintln(w, "no earlier run of this model to compare with")
	}
	for _, s := range run.Skipped {
		fmt.Fprintf(w, "skipped %s\n", s.Error())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCATEGORY\tMETRIC\tRATE\t95% CI\tK/N\tCHANGE")
	for _, c := range r.Changes {
		ch := "-"
		if c.Before != nil {
			ch = fmt.Sprintf("%+.1f pts", 100*c.Delta)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t[%.1f, %.1f]\t%d/%d\t%s\n", c.Category, c.Metric, 100*c.Now.Rate,
			100*c.Now.Low, 100*c.Now.High, c.Now.K, c.Now.N, ch)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range run.Results {
		if len(c.Guard) > 0 {
			fmt.Fprintf(w, "%s: guard %s labels beside the phrase verdicts: %s\n", c.Category, run.Guard, guardCounts(c.Guard))
		}
	}
	for _, c := range run.Results {
		if c.BBQ != nil {
			fmt.Fprintf(w, "%s: BBQ s_DIS %s, s_AMB %s (%d unparsed answers)\n", c.Category, fmtScore(c.BBQ.SDis), fmtScore(c.BBQ.SAmb), c.BBQ.Unparsed)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

// guardCounts prints a category's "<outcome>/<label>" counts, sorted.
func guardCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func fmtScore(v *float64) string {
	if v == nil || math.IsNaN(*v) {
		return "n/a"
	}
	return fmt.Sprintf("%+.3f", *v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Describe names the regressions in one line, for an alert message.
func Describe(regs []Change) string {
	parts := make([]string, 0, len(regs))
	for _, c := range regs {
		parts = append(parts, fmt.Sprintf("%s %s %.1f%% → %.1f%%", c.Category, c.Metric, 100*c.Before.Rate, 100*c.Now.Rate))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}
