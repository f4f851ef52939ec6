package filter

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/warden-llm/warden/safety/detect"
)

// Finding is one match and what the policy did about it. Start and End are
// byte offsets into the text as it was given, never the matched text
// itself.
type Finding struct {
	Direction Direction `json:"direction"`
	Category  string    `json:"category"`
	Detector  string    `json:"detector"`
	Start     int       `json:"start"`
	End       int       `json:"end"`
	Action    Action    `json:"action"`
	// Score is a statistical detector's confidence (the injection
	// classifier's probability); 0 for rule-based findings.
	Score float64 `json:"score,omitempty"`
}

// Result is a whole text after filtering.
type Result struct {
	Text     string
	Findings []Finding
	// Blocked is set when a finding's action is block. For input the text
	// must not be sent on (Text has every finding replaced); for output
	// Text holds what came before the blocked match.
	Blocked bool
}

// Decision counts one (direction, category, action) of a request: what the
// audit record holds.
type Decision struct {
	Direction Direction `json:"direction"`
	Category  string    `json:"category"`
	Action    Action    `json:"action"`
	Count     int       `json:"count"`
}

// Summary is what the policy did to one request: the audit record's
// safety field. The server writes it; the audit trail reads it back to
// raise alerts. It never holds matched text.
type Summary struct {
	Profile   string     `json:"profile"`
	Decisions []Decision `json:"decisions"`
}

// Alerting returns the decisions that raise an alert: flags and blocks.
func (s Summary) Alerting() []Decision {
	var out []Decision
	for _, d := range s.Decisions {
		if d.Action == Flag || d.Action == Block {
			out = append(out, d)
		}
	}
	return out
}

// Request filters the texts of one API request: its prompt parts and its
// answer. Placeholders are numbered per request, so the same e-mail address
// becomes the same [EMAIL_1] wherever it appears in it. A Request is not
// safe for concurrent use.
type Request struct {
	e    *Engine
	dets []detect.Detector
	p    *Profile

	canary   []detect.Detector            // output detectors for this request's system prompt
	names    map[string]map[string]string // category → text → placeholder
	findings []Finding

	showAllowed bool
}

// ShowAllowed makes the request report findings whose action is allow too,
// as warden scan does. Filtering is unchanged.
func (r *Request) ShowAllowed() { r.showAllowed = true }

// Profile is the request's profile.
func (r *Request) Profile() *Profile { return r.p }

// Scan filters one whole text in direction dir. It gives the same result as
// writing text to a stream in one piece and closing it, but reads text in
// place and, when nothing in it is redacted, returns it without a copy.
func (r *Request) Scan(dir Direction, text string) Result {
	s := r.stream(dir, false)
	out := s.scanWhole(text)
	return Result{Text: out, Findings: s.findings, Blocked: s.blocked}
}

// Findings returns every finding so far, allowed ones excluded.
func (r *Request) Findings() []Finding { return r.findings }

// Blocked reports the categories of the request's blocking findings in dir,
// sorted and without repeats.
func (r *Request) Blocked(dir Direction) []string {
	var cats []string
	for _, f := range r.findings {
		if f.Direction == dir && f.Action == Block && !slices.Contains(cats, f.Category) {
			cats = append(cats, f.Category)
		}
	}
	slices.Sort(cats)
	return cats
}

// Decisions counts the request's findings by direction, category and
// action, in a stable order.
func (r *Request) Decisions() []Decision {
	var ds []Decision
	for _, f := range r.findings {
		i := slices.IndexFunc(ds, func(d Decision) bool {
			return d.Direction == f.Direction && d.Category == f.Category && d.Action == f.Action
		})
		if i < 0 {
			ds = append(ds, Decision{f.Direction, f.Category, f.Action, 0})
			i = len(ds) - 1
		}
		ds[i].Count++
	}
	slices.SortFunc(ds, func(a, b Decision) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Category, b.Category), cmp.Compare(a.Action, b.Action))
	})
	return ds
}

// placeholder names a redacted span: the same text of the same category
// gets the same name within a request. Finding a name again allocates
// nothing.
func (r *Request) placeholder(category string, text []byte) string {
	if stripped[category] {
		return ""
	}
	byText := r.names[category]
	if n, ok := byText[string(text)]; ok {
		return n
	}
	if r.names == nil {
		r.names = map[string]map[string]string{}
	}
	if byText == nil {
		byText = map[string]string{}
		r.names[category] = byText
	}
	n := "[" + strings.ToUpper(category) + "_" + strconv.Itoa(len(byText)+1) + "]"
	byText[string(text)] = n
	return n
}
