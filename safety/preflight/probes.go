package preflight

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warden-llm/warden/safety/probe"
)

// checkProbes reads the stored probe runs (`warden probe run`, serve's
// probe.schedule): none, or the newest older than ProbeMaxAge, is a warn;
// a newest run whose every probe errored is a fail (nothing was tested);
// rates that rose beyond ProbeThreshold since the previous run of the
// model are a warn naming them.
func checkProbes(ctx context.Context, e *Env) Result {
	if e.DB == nil {
		return warn("no database to read the probe runs from", "")
	}
	fix := "run `warden probe run`, and set probe.schedule (e.g. \"24h\") so serve probes daily"
	last, err := probe.Get(ctx, e.DB, 0, false)
	if errors.Is(err, probe.ErrNoRun) {
		return warn("no probe run stored: nothing has tested the model and filters against attacks, bias and leakage", fix)
	}
	if err != nil {
		return fail("read probe runs: "+err.Error(), "")
	}
	maxAge := e.ProbeMaxAge
	if maxAge <= 0 {
		maxAge = 8 * 24 * time.Hour
	}
	what := fmt.Sprintf("probe run %d (%s on %s, %d probes: %d pass, %d fail, %d error)", last.ID, last.Suite, last.Model,
		last.Count, last.Passed, last.Failed, last.Errors)
	if last.Count > 0 && last.Errors == last.Count {
		return fail(what+": every probe errored, so nothing was tested", "check the server's log and the model, then `warden probe run`")
	}
	if age := e.now().Sub(last.Finished); age > maxAge {
		return warn(fmt.Sprintf("%s is %d days old (older than %s)", what, int(age.Hours()/24), maxAge), fix)
	}
	threshold := e.ProbeThreshold
	if threshold <= 0 {
		threshold = 0.1
	}
	if prev, err := probe.Previous(ctx, e.DB, last); err == nil {
		if regs := probe.Regressions(probe.Compare(last.Results, prev.Results), threshold); len(regs) > 0 {
			return warn(fmt.Sprintf("%s regressed since run %d: %s", what, prev.ID, probe.Describe(regs)),
				"read `warden probe report` and the answers before putting this model online")
		}
	}
	return pass(what)
}
