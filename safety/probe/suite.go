// Package probe holds Warden's probe suites: repeatable bias, safety,
// over-refusal, injection and leakage prompts sent through the real request
// path, scored without a judge model (refusal phrases and the filters'
// verdicts, multiple-choice parsing, counterfactual pair differences, BBQ's
// bias scores), with Wilson 95% intervals, stored runs and the regressions
// between two runs of a model.
package probe

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Expect is what a probe's answer should do.
type Expect string

// The expectations a probe can hold.
const (
	// ExpectRefuse: the model (or a filter) should refuse. An answer that
	// does not is an attack success.
	ExpectRefuse Expect = "refuse"
	// ExpectComply: a safe prompt that looks risky; a refusal is an
	// over-refusal.
	ExpectComply Expect = "comply"
	// ExpectChoice: a multiple-choice item; the parsed choice should be
	// Answer.
	ExpectChoice Expect = "choice"
	// ExpectNotContains: the answer must not contain any of NotContains
	// (a canary, an injected marker, a PII value).
	ExpectNotContains Expect = "not_contains"
)

// Message is one chat message of a probe.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Probe is one line of a suite.
type Probe struct {
	ID       string    `json:"id"`
	Category string    `json:"category"`
	Messages []Message `json:"messages"`
	Expect   Expect    `json:"expect"`
	// Options are the choices of a multiple-choice item (or of a pair's
	// sides, e.g. yes/no); Answer is the index of the right one.
	Options []string `json:"options,omitempty"`
	Answer  *int     `json:"answer,omitempty"`
	// NotContains lists what the answer must not contain
	// (ExpectNotContains), compared case-insensitively.
	NotContains []string `json:"not_contains,omitempty"`
	// Pair links the two sides of a counterfactual pair, which differ only
	// in Group (the group term).
	Pair  string `json:"pair,omitempty"`
	Group string `json:"group,omitempty"`
	// Hazard is the Llama Guard 3 S-code of a harmful prompt (S1..S14).
	Hazard string `json:"hazard,omitempty"`
	// Condition is "ambig" or "disambig" for a BBQ-style item; Biased is
	// the option that follows the stereotype, Unknown the "cannot be
	// determined" option.
	Condition string `json:"condition,omitempty"`
	Biased    *int   `json:"biased,omitempty"`
	Unknown   *int   `json:"unknown,omitempty"`
	Source    string `json:"source,omitempty"`
	License   string `json:"license,omitempty"`
}

// Suite is a parsed suite: its probes in file order, the SHA-256 of the
// file's bytes, and the lines skipped.
type Suite struct {
	Name    string
	Probes  []Probe
	SHA256  string
	Skipped []LineError
}

// LineError is a malformed line, skipped: where it is and why.
type LineError struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Err  string `json:"error"`
}

func (e LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Err) }

// ErrEmptySuite reports a suite with no usable probe.
var ErrEmptySuite = errors.New("suite has no probes")

// Limits of a suite line.
const (
	MaxLineBytes = 256 << 10
	maxMessages  = 32
	maxOptions   = 10
	maxIDLen     = 128
)

// Parse reads a suite in JSONL, one probe per line (blank lines and lines
// starting with # are ignored). Lines in the published BBQ format
// (context, question, ans0..2, label, context_condition, category) are
// converted. A malformed line is reported in Skipped with its file and
// line number, and skipped. A suite with no probe is ErrEmptySuite.
func Parse(name string, r io.Reader) (Suite, error) {
	s := Suite{Name: name}
	h := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(r, h), 64<<10)
	seen := map[string]int{}
	for n := 1; ; n++ {
		line, err := readLine(br)
		if len(line) > 0 {
			p, perr := ParseLine(line)
			if perr == nil {
				if first, dup := seen[p.ID]; dup {
					perr = fmt.Errorf("duplicate id %q (first on line %d)", p.ID, first)
				}
			}
			switch {
			case errors.Is(perr, errBlank):
			case perr != nil:
				s.Skipped = append(s.Skipped, LineError{File: name, Line: n, Err: perr.Error()})
			default:
				seen[p.ID] = n
				s.Probes = append(s.Probes, p)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return s, fmt.Errorf("read %s: %w", name, err)
		}
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	if len(s.Probes) == 0 {
		return s, fmt.Errorf("%s: %w", name, ErrEmptySuite)
	}
	return s, nil
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxLineBytes)

// readLine returns the next line without its newline; a line over
// MaxLineBytes is returned as a marker the parser rejects, its rest
// drained. It is shared with the dataset reader's contract: never more
// than MaxLineBytes of one line in memory.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long && len(buf)+len(chunk) > MaxLineBytes+2 {
			long, buf = true, nil
		}
		if !long {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if long {
			return tooLong, err
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}

// tooLong stands for a line over the limit; ParseLine reports it.
var tooLong = []byte("\x00too long")

var errBlank = errors.New("blank")

// ParseLine parses one suite line: a probe, or a BBQ item.
func ParseLine(line []byte) (Probe, error) {
	if bytes.Equal(line, tooLong) {
		return Probe{}, errLineTooLong
	}
	t := bytes.TrimSpace(line)
	if len(t) == 0 || t[0] == '#' {
		return Probe{}, errBlank
	}
	if !utf8.Valid(t) {
		return Probe{}, errors.New("not valid UTF-8")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(t, &keys); err != nil {
		return Probe{}, fmt.Errorf("not a JSON object: %w", err)
	}
	if _, ok := keys["context"]; ok {
		if _, ok := keys["ans0"]; ok {
			return parseBBQ(t)
		}
	}
	var p Probe
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Probe{}, fmt.Errorf("probe: %w", err)
	}
	if err := p.Validate(); err != nil {
		return Probe{}, err
	}
	return p, nil
}

// Validate checks a probe's fields.
func (p *Probe) Validate() error {
	p.ID = strings.TrimSpace(p.ID)
	p.Category = strings.TrimSpace(p.Category)
	switch {
	case p.ID == "":
		return errors.New("probe has no id")
	case len(p.ID) > maxIDLen:
		return fmt.Errorf("id longer than %d bytes", maxIDLen)
	case p.Category == "":
		return fmt.Errorf("probe %s has no category", p.ID)
	case len(p.Messages) == 0:
		return fmt.Errorf("probe %s has no messages", p.ID)
	case len(p.Messages) > maxMessages:
		return fmt.Errorf("probe %s has more than %d messages", p.ID, maxMessages)
	case len(p.Options) > maxOptions:
		return fmt.Errorf("probe %s has more than %d options", p.ID, maxOptions)
	}
	for i, m := range p.Messages {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return fmt.Errorf("probe %s: message %d has role %q (want system, user or assistant)", p.ID, i, m.Role)
		}
	}
	if p.Messages[len(p.Messages)-1].Role != "user" {
		return fmt.Errorf("probe %s: the last message must be the user's", p.ID)
	}
	idx := func(name string, v *int) error {
		if v != nil && (*v < 0 || *v >= len(p.Options)) {
			return fmt.Errorf("probe %s: %s %d is not an option index (%d options)", p.ID, name, *v, len(p.Options))
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"answer", p.Answer}, {"biased", p.Biased}, {"unknown", p.Unknown}} {
		if err := idx(f.name, f.v); err != nil {
			return err
		}
	}
	switch p.Expect {
	case ExpectRefuse, ExpectComply:
	case ExpectChoice:
		if len(p.Options) < 2 || p.Answer == nil {
			return fmt.Errorf("probe %s: expect choice needs at least 2 options and an answer", p.ID)
		}
	case ExpectNotContains:
		if len(p.NotContains) == 0 {
			return fmt.Errorf("probe %s: expect not_contains needs not_contains strings", p.ID)
		}
		for _, s := range p.NotContains {
			if strings.TrimSpace(s) == "" {
				return fmt.Errorf("probe %s: empty not_contains string", p.ID)
			}
		}
	default:
		return fmt.Errorf("probe %s: expect %q (want refuse, comply, choice or not_contains)", p.ID, p.Expect)
	}
	switch p.Condition {
	case "", CondAmbig, CondDisambig:
	default:
		return fmt.Errorf("probe %s: condition %q (want ambig or disambig)", p.ID, p.Condition)
	}
	if p.Pair != "" && p.Group == "" {
		return fmt.Errorf("probe %s: a pair side needs its group term", p.ID)
	}
	return nil
}

// The BBQ context conditions.
const (
	CondAmbig    = "ambig"
	CondDisambig = "disambig"
)

// bbqItem is one line of the published BBQ data (Parrish et al. 2022).
type bbqItem struct {
	ExampleID        json.Number         `json:"example_id"`
	QuestionIndex    json.RawMessage     `json:"question_index"`
	QuestionPolarity string              `json:"question_polarity"`
	ContextCondition string              `json:"context_condition"`
	Category         string              `json:"category"`
	Context          string              `json:"context"`
	Question         string              `json:"question"`
	Ans0             string              `json:"ans0"`
	Ans1             string              `json:"ans1"`
	Ans2             string              `json:"ans2"`
	Label            *int                `json:"label"`
	AnswerInfo       map[string][]string `json:"answer_info"`
	Metadata         struct {
		StereotypedGroups []string `json:"stereotyped_groups"`
	} `json:"additional_metadata"`
}

// parseBBQ converts a BBQ line into a choice probe in category "bias".
// The biased option is the stereotyped group's answer to a negative
// question, or the other group's to a non-negative one (answer_info and
// additional_metadata.stereotyped_groups); without them it is unknown and
// the item counts for accuracy only.
func parseBBQ(line []byte) (Probe, error) {
	var b bbqItem
	if err := json.Unmarshal(line, &b); err != nil {
		return Probe{}, fmt.Errorf("bbq item: %w", err)
	}
	cond := ""
	switch b.ContextCondition {
	case "ambig":
		cond = CondAmbig
	case "disambig":
		cond = CondDisambig
	default:
		return Probe{}, fmt.Errorf("bbq item: context_condition %q (want ambig or disambig)", b.ContextCondition)
	}
	if b.Label == nil {
		return Probe{}, errors.New("bbq item: no label")
	}
	if b.Context == "" || b.Question == "" || b.Ans0 == "" || b.Ans1 == "" || b.Ans2 == "" {
		return Probe{}, errors.New("bbq item: context, question and ans0..ans2 are required")
	}
	p := Probe{
		ID:        "bbq-" + strings.ToLower(b.Category) + "-" + b.ExampleID.String(),
		Category:  "bias",
		Messages:  []Message{{Role: "user", Content: fmt.Sprintf("%s\n%s\nA) %s\nB) %s\nC) %s\nAnswer with the letter only.", b.Context, b.Question, b.Ans0, b.Ans1, b.Ans2)}},
		Expect:    ExpectChoice,
		Options:   []string{b.Ans0, b.Ans1, b.Ans2},
		Answer:    b.Label,
		Condition: cond,
		Source:    "BBQ " + b.Category,
		License:   "CC-BY-4.0",
	}
	if b.ExampleID == "" {
		p.ID = fmt.Sprintf("bbq-%s-%x", strings.ToLower(b.Category), sha256.Sum256(line))[:48]
	}
	stereo := map[string]bool{}
	for _, g := range b.Metadata.StereotypedGroups {
		stereo[strings.ToLower(g)] = true
	}
	for i := range 3 {
		info := b.AnswerInfo[fmt.Sprintf("ans%d", i)]
		if len(info) < 2 {
			continue
		}
		group := strings.ToLower(info[1])
		if group == "unknown" {
			p.Unknown = ptr(i)
			continue
		}
		hit := stereo[group]
		if (b.QuestionPolarity == "neg") == hit && len(stereo) > 0 && p.Biased == nil {
			p.Biased = ptr(i)
		}
	}
	if err := p.Validate(); err != nil {
		return Probe{}, err
	}
	return p, nil
}

func ptr[T any](v T) *T { return &v }
