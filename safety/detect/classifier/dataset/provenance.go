package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Provenance is the record written next to the weights.
type Provenance struct {
	Model     string    `json:"model"`
	SHA256    string    `json:"sha256"`
	Trainer   string    `json:"trainer"`
	Bits      int       `json:"bits"`
	Window    int       `json:"window"`
	Threshold float64   `json:"threshold"`
	Floor     float64   `json:"floor"`
	Params    any       `json:"params"`
	Sources   []*Source `json:"sources"`
	Metrics   []Metric  `json:"metrics"`
	// Totals per set: "split" (held-out split of trained sources) and
	// "unseen" (sources never trained on).
	Totals []Metric `json:"totals"`
	// LeftOut: for each trained benign source, the false positives at the
	// threshold of a model trained without that source — how the model
	// meets a kind of prompt it has never seen.
	LeftOut []Metric `json:"source_left_out"`
}

// A Metric is a model's result on one source's examples of a set, at the
// threshold.
type Metric struct {
	Set      string  `json:"set"`
	Source   string  `json:"source,omitempty"`
	Attacks  int     `json:"attacks"`
	Detected int     `json:"detected"`
	Recall   float64 `json:"recall"`
	Benign   int     `json:"benign"`
	Flagged  int     `json:"flagged"`
	FPRate   float64 `json:"fp_rate"`
}

// Scorer is what Evaluate needs of a model.
type Scorer interface {
	Score(text []byte) float64
}

// Evaluate fills p.Sources, p.Metrics and p.Totals: each source's examples
// of its set (all of a held-out source, the test split of the others)
// scored against p.Threshold.
func (p *Provenance) Evaluate(m Scorer, srcs []*Source) {
	p.Sources = srcs
	p.Metrics = Metrics(m, srcs, p.Threshold)
	p.Totals = Totals(p.Metrics)
}

// Metrics scores each source's evaluation examples at threshold.
func Metrics(m Scorer, srcs []*Source, threshold float64) []Metric {
	var out []Metric
	for _, s := range srcs {
		r := Metric{Set: "split", Source: s.Name}
		if s.Heldout {
			r.Set = "unseen"
		}
		for _, ex := range s.Examples {
			if !s.Heldout && !ex.Test {
				continue
			}
			hit := m.Score([]byte(ex.Text)) >= threshold
			if ex.Attack {
				r.Attacks++
				r.Detected += b2i(hit)
			} else {
				r.Benign++
				r.Flagged += b2i(hit)
			}
		}
		r.Recall, r.FPRate = ratio(r.Detected, r.Attacks), ratio(r.Flagged, r.Benign)
		out = append(out, r)
	}
	return out
}

// Totals sums metrics per set.
func Totals(ms []Metric) []Metric {
	var out []Metric
	for _, set := range []string{"split", "unseen"} {
		t := Metric{Set: set}
		for _, m := range ms {
			if m.Set == set {
				t.Attacks += m.Attacks
				t.Detected += m.Detected
				t.Benign += m.Benign
				t.Flagged += m.Flagged
			}
		}
		t.Recall, t.FPRate = ratio(t.Detected, t.Attacks), ratio(t.Flagged, t.Benign)
		out = append(out, t)
	}
	return out
}

// Report is a human-readable table of the metrics.
func (p *Provenance) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "threshold %.4f floor %.4f sha256 %s\n", p.Threshold, p.Floor, p.SHA256)
	for _, m := range append(append(append([]Metric(nil), p.Metrics...), p.Totals...), p.LeftOut...) {
		src := m.Source
		if src == "" {
			src = "TOTAL"
		}
		fmt.Fprintf(&b, "%-7s %-26s attacks %4d recall %.3f   benign %4d fp %.4f\n", m.Set, src, m.Attacks, m.Recall, m.Benign, m.FPRate)
	}
	return b.String()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
