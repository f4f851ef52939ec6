// Package dataset checks fine-tuning data before it is used: the language
// of each record and their distribution, the balance of a label field,
// exact and near duplicates (the repeat detector's MinHash), records with
// PII or secrets (counted per category with line numbers, never their
// text), and the dataset's manifest with the file's SHA-256. It streams
// the file: memory grows with the number of records (a few hundred bytes
// each for the duplicate checks), not with their size.
package dataset

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/abadojack/whatlanggo"

	"github.com/warden-llm/warden/safety/filter"
)

// MaxLineBytes bounds one record; a longer line is reported and skipped.
const MaxLineBytes = 8 << 20

// maxListed bounds the line numbers a report lists per finding kind.
const maxListed = 1000

// Options set what Check reads.
type Options struct {
	// TextField names the record's text; "" reads "text", else the
	// contents of "messages" (chat format), else "prompt" + "completion".
	TextField string
	// LabelField names the label whose balance is reported ("" none).
	LabelField string
	// Sensitive returns the PII and secret categories found in text
	// (nil: not checked). It sees the text; the report keeps only counts
	// and line numbers.
	Sensitive func(text string) []string
	// Language returns a record's ISO 639-1 language, "und" when not
	// reliable (nil: whatlanggo).
	Language func(text string) string
	// Progress is called with the bytes read so far, every 64 KiB or so.
	Progress func(read int64)
}

// LineError is a malformed line, skipped.
type LineError struct {
	Line int    `json:"line"`
	Err  string `json:"error"`
}

// Duplicate is a record that repeats an earlier one.
type Duplicate struct {
	Line int `json:"line"`
	Of   int `json:"of"` // the earlier record's line
}

// Sensitive is one category of PII or secret: how many records hold it,
// and their lines (the first maxListed).
type Sensitive struct {
	Records int   `json:"records"`
	Lines   []int `json:"lines"`
}

// Report is what Check found.
type Report struct {
	File      string      `json:"file"`
	Bytes     int64       `json:"bytes"`
	SHA256    string      `json:"sha256"`
	Records   int         `json:"records"`
	Malformed int         `json:"malformed"`
	Errors    []LineError `json:"errors,omitempty"` // the first maxListed

	Languages         map[string]int `json:"languages"`
	MainLanguage      string         `json:"main_language"`
	MainLanguageShare float64        `json:"main_language_share"`

	Labels        map[string]int `json:"labels,omitempty"`
	LabelRatio    float64        `json:"label_ratio,omitempty"`    // most / least frequent
	LabelEntropy  float64        `json:"label_entropy,omitempty"`  // bits
	LabelBalance  float64        `json:"label_balance,omitempty"`  // entropy / log2(classes): 1 is even
	MissingLabels int            `json:"missing_labels,omitempty"` // records without the label field

	ExactDuplicates     int                   `json:"exact_duplicates"`
	NearDuplicates      int                   `json:"near_duplicates"`
	DuplicateRate       float64               `json:"duplicate_rate"`
	NearDuplicateRate   float64               `json:"near_duplicate_rate"`
	Duplicates          []Duplicate           `json:"duplicates,omitempty"` // the first maxListed, exact and near
	SensitiveRecords    int                   `json:"sensitive_records"`
	SensitiveRate       float64               `json:"sensitive_rate"`
	SensitiveByCategory map[string]*Sensitive `json:"sensitive,omitempty"`

	Manifest *ManifestCheck `json:"manifest,omitempty"`
}

// near-duplicate candidates come from LSH over the 32 MinHash values:
// 8 bands of 4 rows (a pair at Jaccard 0.75 shares a band with
// probability 1-(1-0.75^4)^8 ≈ 0.96), each candidate confirmed with the
// repeat detector's own test.
const (
	bands    = 8
	bandRows = 4
)

// Check reads a JSONL dataset from r (named name in the report) and
// reports on it. It returns an error only when r fails; malformed lines
// are counted and skipped.
func Check(name string, r io.Reader, o Options) (*Report, error) {
	rep := &Report{File: name, Languages: map[string]int{}, SensitiveByCategory: map[string]*Sensitive{}}
	if o.LabelField != "" {
		rep.Labels = map[string]int{}
	}
	lang := o.Language
	if lang == nil {
		lang = DetectLanguage
	}
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(r, h), progress: o.Progress}
	br := bufio.NewReaderSize(cr, 64<<10)
	exact := map[uint64]int{}
	var sigs []filter.Signature
	var sigLines []int
	buckets := map[uint64][]int32{}
	for n := 1; ; n++ {
		line, long, err := readLine(br)
		if len(line) > 0 || long {
			text, label, hasLabel, perr := parseRecord(line, long, o)
			switch {
			case errors.Is(perr, errBlank):
			case perr != nil:
				rep.Malformed++
				if len(rep.Errors) < maxListed {
					rep.Errors = append(rep.Errors, LineError{Line: n, Err: perr.Error()})
				}
			default:
				rep.Records++
				rep.Languages[lang(text)]++
				if o.LabelField != "" {
					if hasLabel {
						rep.Labels[label]++
					} else {
						rep.MissingLabels++
					}
				}
				sig := filter.Sign(text)
				if first, ok := exact[sig.Exact]; ok {
					rep.ExactDuplicates++
					rep.addDup(n, first)
				} else {
					exact[sig.Exact] = n
					if !sig.Short {
						if of := nearMatch(&sig, sigs, sigLines, buckets); of > 0 {
							rep.NearDuplicates++
							rep.addDup(n, of)
						}
						idx := int32(len(sigs))
						sigs, sigLines = append(sigs, sig), append(sigLines, n)
						for _, k := range bandKeys(&sig) {
							buckets[k] = append(buckets[k], idx)
						}
					}
				}
				if o.Sensitive != nil {
					cats := o.Sensitive(text)
					if len(cats) > 0 {
						rep.SensitiveRecords++
					}
					seen := map[string]bool{}
					for _, c := range cats {
						if seen[c] {
							continue
						}
						seen[c] = true
						s := rep.SensitiveByCategory[c]
						if s == nil {
							s = &Sensitive{}
							rep.SensitiveByCategory[c] = s
						}
						s.Records++
						if len(s.Lines) < maxListed {
							s.Lines = append(s.Lines, n)
						}
					}
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("read %s: %w", name, err)
		}
	}
	rep.Bytes = cr.n
	rep.SHA256 = hex.EncodeToString(h.Sum(nil))
	rep.finish()
	return rep, nil
}

func (rep *Report) addDup(line, of int) {
	if len(rep.Duplicates) < maxListed {
		rep.Duplicates = append(rep.Duplicates, Duplicate{Line: line, Of: of})
	}
}

func (rep *Report) finish() {
	if rep.Records > 0 {
		rep.DuplicateRate = float64(rep.ExactDuplicates) / float64(rep.Records)
		rep.NearDuplicateRate = float64(rep.NearDuplicates) / float64(rep.Records)
		rep.SensitiveRate = float64(rep.SensitiveRecords) / float64(rep.Records)
	}
	best := ""
	for l, c := range rep.Languages {
		if best == "" || c > rep.Languages[best] || c == rep.Languages[best] && l < best {
			best = l
		}
	}
	if best != "" {
		rep.MainLanguage = best
		rep.MainLanguageShare = float64(rep.Languages[best]) / float64(rep.Records)
	}
	if len(rep.Labels) > 0 {
		total, lo, hi := 0, math.MaxInt, 0
		for _, c := range rep.Labels {
			total += c
			lo, hi = min(lo, c), max(hi, c)
		}
		rep.LabelRatio = float64(hi) / float64(lo)
		for _, c := range rep.Labels {
			p := float64(c) / float64(total)
			rep.LabelEntropy -= p * math.Log2(p)
		}
		if len(rep.Labels) > 1 {
			rep.LabelBalance = rep.LabelEntropy / math.Log2(float64(len(rep.Labels)))
		} else {
			rep.LabelBalance = 0
		}
	}
}

func bandKeys(s *filter.Signature) [bands]uint64 {
	var out [bands]uint64
	var buf [8*bandRows + 1]byte
	for b := range bands {
		buf[0] = byte(b)
		for r := range bandRows {
			binary.LittleEndian.PutUint64(buf[1+8*r:], s.Min[b*bandRows+r])
		}
		h := fnv.New64a()
		h.Write(buf[:])
		out[b] = h.Sum64()
	}
	return out
}

// nearMatch returns the line of an earlier record s nearly duplicates, or 0.
func nearMatch(s *filter.Signature, sigs []filter.Signature, lines []int, buckets map[uint64][]int32) int {
	for _, k := range bandKeys(s) {
		for _, i := range buckets[k] {
			if filter.NearDuplicate(s, &sigs[i]) {
				return lines[i]
			}
		}
	}
	return 0
}

var errBlank = errors.New("blank")

// parseRecord returns a record's text and label.
func parseRecord(line []byte, long bool, o Options) (text, label string, hasLabel bool, err error) {
	if long {
		return "", "", false, fmt.Errorf("line longer than %d bytes", MaxLineBytes)
	}
	t := bytes.TrimSpace(line)
	if len(t) == 0 {
		return "", "", false, errBlank
	}
	if !utf8.Valid(t) {
		return "", "", false, errors.New("not valid UTF-8")
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(t, &rec); err != nil {
		return "", "", false, fmt.Errorf("not a JSON object: %v", err)
	}
	text, err = recordText(rec, o.TextField)
	if err != nil {
		return "", "", false, err
	}
	if o.LabelField != "" {
		if raw, ok := rec[o.LabelField]; ok && string(raw) != "null" {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw) // a number or a bool: its JSON text
			}
			label, hasLabel = s, true
		}
	}
	return text, label, hasLabel, nil
}

func recordText(rec map[string]json.RawMessage, field string) (string, error) {
	str := func(name string) (string, bool, error) {
		raw, ok := rec[name]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", true, fmt.Errorf("field %q is not a string", name)
		}
		return s, true, nil
	}
	if field != "" {
		s, ok, err := str(field)
		if !ok {
			return "", fmt.Errorf("no field %q", field)
		}
		return s, err
	}
	if s, ok, err := str("text"); ok {
		return s, err
	}
	if raw, ok := rec["messages"]; ok {
		var msgs []struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return "", errors.New(`field "messages" is not a list of {role, content}`)
		}
		parts := make([]string, len(msgs))
		for i, m := range msgs {
			parts[i] = m.Content
		}
		return strings.Join(parts, "\n"), nil
	}
	p, okP, errP := str("prompt")
	c, okC, errC := str("completion")
	if okP || okC {
		return strings.TrimSpace(p + "\n" + c), errors.Join(errP, errC)
	}
	return "", errors.New(`no text: want a "text" field, "messages", or "prompt"/"completion" (or name one with --text-field)`)
}

// readLine reads one line (without its newline), holding at most
// MaxLineBytes of it; long reports a longer line, drained.
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !long && len(line)+len(chunk) > MaxLineBytes+2 {
			long, line = true, nil
		}
		if !long {
			line = append(line, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), long, err
	}
}

type countReader struct {
	r        io.Reader
	n, last  int64
	progress func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && (c.n-c.last >= 64<<10 || err == io.EOF) {
		c.last = c.n
		c.progress(c.n)
	}
	return n, err
}

// DetectLanguage is a record's ISO 639-1 language by whatlanggo's
// trigram profiles, "und" when its guess is not reliable (short or mixed
// text).
func DetectLanguage(text string) string {
	info := whatlanggo.Detect(text)
	if !info.IsReliable() {
		return "und"
	}
	if c := info.Lang.Iso6391(); c != "" {
		return c
	}
	return info.Lang.Iso6393()
}

// SortedLanguages lists languages by count, most first.
func (rep *Report) SortedLanguages() []string {
	out := make([]string, 0, len(rep.Languages))
	for l := range rep.Languages {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := rep.Languages[out[i]], rep.Languages[out[j]]
		return a > b || a == b && out[i] < out[j]
	})
	return out
}

// Thresholds are the limits a dataset must keep; a zero MaxLabelRatio or
// MinLanguageShare turns its check off.
type Thresholds struct {
	MaxDuplicateRate     float64
	MaxNearDuplicateRate float64
	MaxSensitiveRate     float64
	MaxLabelRatio        float64
	MinLanguageShare     float64
}

// Violations lists the thresholds rep exceeds, and its manifest's
// problems; empty means the dataset passes.
func (rep *Report) Violations(t Thresholds) []string {
	var out []string
	if rep.Records == 0 {
		out = append(out, "no records")
	}
	if rep.DuplicateRate > t.MaxDuplicateRate {
		out = append(out, fmt.Sprintf("exact duplicates %.2f%% (%d) > max_duplicate_rate %.2f%%", 100*rep.DuplicateRate, rep.ExactDuplicates, 100*t.MaxDuplicateRate))
	}
	if rep.NearDuplicateRate > t.MaxNearDuplicateRate {
		out = append(out, fmt.Sprintf("near duplicates %.2f%% (%d) > max_near_duplicate_rate %.2f%%", 100*rep.NearDuplicateRate, rep.NearDuplicates, 100*t.MaxNearDuplicateRate))
	}
	if rep.SensitiveRate > t.MaxSensitiveRate {
		out = append(out, fmt.Sprintf("records with PII or secrets %.2f%% (%d) > max_sensitive_rate %.2f%%", 100*rep.SensitiveRate, rep.SensitiveRecords, 100*t.MaxSensitiveRate))
	}
	if t.MaxLabelRatio > 0 && rep.LabelRatio > t.MaxLabelRatio {
		out = append(out, fmt.Sprintf("label ratio %.1f (most/least frequent) > max_label_ratio %.1f", rep.LabelRatio, t.MaxLabelRatio))
	}
	if t.MinLanguageShare > 0 && rep.MainLanguageShare < t.MinLanguageShare {
		out = append(out, fmt.Sprintf("main language %s is %.1f%% of records < min_language_share %.1f%%", rep.MainLanguage, 100*rep.MainLanguageShare, 100*t.MinLanguageShare))
	}
	if rep.Manifest != nil {
		for _, p := range rep.Manifest.Problems {
			out = append(out, "manifest: "+p)
		}
	}
	return out
}
