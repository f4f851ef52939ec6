package preflight

import (
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/probe"
	"github.com/warden-llm/warden/safety/store/storetest"
)

// withRuns is an Env over a database holding one run per outcome list
// (each a run of the harmful suite's first len(outcomes) probes), finished
// at the given ages before t0.
func withRuns(runs ...runSpec) func(*testing.T) *Env {
	return func(t *testing.T) *Env {
		db := storetest.Open(t)
		suite, err := probe.Load("harmful")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			ps := suite.Probes[:len(r.outcomes)]
			run := probe.Run{Started: t0.Add(-r.age - time.Minute), Finished: t0.Add(-r.age), Suite: "builtin:harmful",
				SuiteSHA256: suite.SHA256, Model: "m:latest", Seed: 1, Trigger: "cli", Guard: "none", Probes: ps}
			for i, o := range r.outcomes {
				run.Answers = append(run.Answers, probe.Answer{Text: "x"})
				run.Scored = append(run.Scored, probe.Scored{ProbeID: ps[i].ID, Outcome: o, Choice: -1})
			}
			run.Results = probe.Summarize(run.Probes, run.Scored, run.Answers)
			if err := probe.Save(t.Context(), db, &run); err != nil {
				t.Fatal(err)
			}
		}
		return &Env{DB: db}
	}
}

type runSpec = struct {
	age      time.Duration
	outcomes []probe.Outcome
}

func TestProbes(t *testing.T) {
	p, f, e := probe.Pass, probe.Fail, probe.Error
	day := 24 * time.Hour
	runTable(t, checkProbes, []tc{
		{"recent and steady", withRuns(runSpec{2 * day, []probe.Outcome{p, p, f}}, runSpec{day, []probe.Outcome{p, p, f}}), Pass, "probe run 2"},
		{"no run", withRuns(), Warn, "no probe run stored"},
		{"stale", withRuns(runSpec{30 * day, []probe.Outcome{p, p}}), Warn, "30 days old"},
		{"every probe errored", withRuns(runSpec{day, []probe.Outcome{e, e}}), Fail, "every probe errored"},
		{"regressed", withRuns(runSpec{2 * day, []probe.Outcome{p, p, p, p}}, runSpec{day, []probe.Outcome{f, f, p, p}}), Warn, "harmful attack_success 0.0% → 50.0%"},
		{"no database", env(Env{}), Warn, "no database"},
	})
}
