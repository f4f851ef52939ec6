// Package detect holds Warden's content detectors: PII (email, phone,
// credit_card, iban, ssn, ip), secrets, prompt injection, hidden and
// confusable Unicode, encoded payloads, terminal control sequences and
// user blocklists. Each detector reports byte spans of the text it is given
// under a stable category name; what to do about a span (allow, redact,
// block, flag) is policy, which lives in package filter.
//
// Detectors are built for streams. The filter engine hands a detector a
// window of text: a little left context that has already been released to
// the reader, then the text still held. A detector reports matches that
// start in the held part and says, through Hold, how many trailing bytes
// could still become (part of) a match once more text arrives. Because the
// engine only ever releases text a detector is not holding, and cuts never
// fall inside a reported match, scanning a text in any chunking finds
// exactly what scanning it whole finds. detecttest.Chunked checks that.
package detect

// MaxHold is the most a detector may hold back, in bytes. A detector whose
// candidate has grown past what could ever match must let go of it.
const MaxHold = 8 << 10

// Context is how many bytes of already released text the engine keeps in
// front of the held text, for boundary checks (is the byte before a
// candidate part of the same word?). Detectors must not need more.
const Context = 64

// A Match is one finding: bytes [Start, End) of the text given to Find.
type Match struct {
	Start, End int
	// Category is the stable policy name: "email", "secret", "injection"...
	Category string
	// Detector names the rule that fired, e.g. "luhn" or "aws-access-key".
	Detector string
	// Score is a statistical detector's confidence in (0, 1]; rule-based
	// detectors leave it 0. The policy may drop a scored match below its
	// threshold.
	Score float32
}

// A Detector finds one category of sensitive text.
//
// Find reports, through report, every match in text that starts at or after
// from; text[:from] is context already released and only informs
// boundaries. Matches are reported in order of Start, do not overlap each
// other, and lie on UTF-8 rune boundaries. Find must accept any bytes,
// including invalid UTF-8, in time linear in len(text) (a bounded window
// per position is fine).
//
// Hold reports how many bytes at the end of text could still be part of a
// match, or change one, once more text is appended: a trailing run of
// digits, an unfinished address, the live state of a phrase automaton.
// It returns 0 when nothing is pending and never more than MaxHold.
type Detector interface {
	Category() string
	Find(text []byte, from int, report func(Match))
	Hold(text []byte) int
}

// Raw is implemented by detectors that judge the original bytes of a text
// rather than its literal view (see norm.Literal): the hidden_unicode,
// confusable and control detectors look for the very tricks the view
// undoes. The filter gives every other detector the literal view, so that
// invisible characters, look-alike letters or other scripts' digits woven
// into a value do not hide it, and maps what they find back to the
// original bytes.
type Raw interface{ RawText() }

// Whole is implemented by detectors that judge a text as a whole rather
// than by spans found in a window: a statistical classifier whose verdict
// on a passage depends on all of it. The filter gives them a prompt whole
// like the others, and an answer once, when it has ended, rather than
// piece by piece as it streams; their Hold is never consulted.
type Whole interface{ WholeText() }
