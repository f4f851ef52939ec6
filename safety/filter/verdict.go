package filter

// Verdicts reached on a whole text by something other than the detectors:
// a guard model's judgement of a prompt or an answer. They join the
// request's findings (without a span), so the audit record's decisions,
// the alerts and the metrics count them as they count the detectors'.

// Judge records that judge found category in a whole text in direction
// dir, and returns the profile's action for it. A whole-text verdict has
// no span to redact: redact is recorded and returned as block. An allowed
// category is not recorded (unless ShowAllowed).
func (r *Request) Judge(dir Direction, category, judge string) Action {
	a := r.p.Action(dir, category)
	if a == Redact {
		a = Block
	}
	if a != Allow || r.showAllowed {
		r.Note(dir, category, judge, a)
	}
	return a
}

// Note records a whole-text decision with the action given, whatever the
// profile says: a guard that gave no verdict (its failure mode decides),
// or one that passed the text (recorded as allowed, so the audit trail
// shows it was judged).
func (r *Request) Note(dir Direction, category, judge string, a Action) {
	r.findings = append(r.findings, Finding{Direction: dir, Category: category, Detector: judge, Action: a})
}

// guardDefaults sets every guard category the profile does not name to
// block, both ways: a guard model is enabled to refuse what it finds.
func guardDefaults(p *Profile, guard []string) {
	for _, c := range guard {
		for _, m := range []map[string]Action{p.Input, p.Output} {
			if _, ok := m[c]; !ok {
				m[c] = Block
			}
		}
	}
}
