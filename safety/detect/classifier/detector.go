// Package classifier holds Warden's prompt-injection classifier: a logistic
// regression over hashed word and character n-grams (see Tokens), trained
// by scripts/train-injection on public, licensed attack and benign prompt
// sets and embedded in the binary (model.bin, 256 KiB of int8 weights, with
// its provenance in model.json). It reports category "injection", detector
// "classifier", with the window's probability as the match's score.
//
// The phrase grammar (package phrase) gives exact spans for the textbook
// phrasings; the classifier catches paraphrase, other languages and long
// role-play jailbreaks. It judges windows of Window tokens of the literal
// view: a text shorter than that is judged whole, a longer one in every run
// of Window consecutive tokens, and overlapping windows at or above the
// floor are reported as one match covering them.
//
// A verdict on a window depends on all of it, so the classifier does not
// fit the span-and-hold contract of a streaming detector: it implements
// detect.Whole, and the filter runs it on whole texts only — a prompt, and
// an answer once it has ended (see package filter).
package classifier

import (
	_ "embed"
	"sync"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// The embedded model and its provenance, written together by
// scripts/train-injection.
var (
	//go:embed model.bin
	modelBin []byte
	//go:embed model.json
	provenance []byte
)

// Embedded returns the model built into the binary. It panics if the
// embedded file is damaged, which a test rules out.
var Embedded = sync.OnceValue(func() *Model {
	m, err := Decode(modelBin)
	if err != nil {
		panic(err)
	}
	return m
})

// Detector is the classifier as a detect.Detector.
type Detector struct {
	m     *Model
	floor float64
}

var (
	_ detect.Detector = (*Detector)(nil)
	_ detect.Whole    = (*Detector)(nil)
)

// New returns the detector over the embedded model. It reports every run
// of windows scoring at least the model's floor; the filter drops those
// below the profile's threshold.
func New() *Detector { return NewModel(Embedded()) }

// NewModel returns the detector over m.
func NewModel(m *Model) *Detector { return &Detector{m: m, floor: float64(m.Floor)} }

// Threshold is the model's default threshold.
func (d *Detector) Threshold() float64 { return float64(d.m.Threshold) }

// Floor is the lowest score the detector reports.
func (d *Detector) Floor() float64 { return d.floor }

// Category implements detect.Detector.
func (d *Detector) Category() string { return "injection" }

// Find reports each run of overlapping windows of text scoring at least
// the floor that starts at or after from, with its highest score.
func (d *Detector) Find(text []byte, from int, report func(detect.Match)) {
	d.m.scan(text, d.floor, func(s span) {
		if s.start >= from {
			// A stray continuation byte after the last word is part of it.
			end := norm.RuneEnd(text, s.end)
			report(detect.Match{Start: s.start, End: end, Category: "injection", Detector: "classifier", Score: float32(s.score)})
		}
	})
}

// Hold implements detect.Detector: the classifier runs on whole texts
// only, so nothing is ever pending.
func (d *Detector) Hold([]byte) int { return 0 }

// WholeText marks the classifier as a detect.Whole detector.
func (d *Detector) WholeText() {}
