package detecttest

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect"
)

// Example is one labelled corpus line: Want says whether Category must be
// found in Text.
type Example struct {
	File string
	Line int
	Want bool
	Text string
}

// ReadCorpus reads a labelled corpus file: lines "+ text" must contain the
// category, "- text" must not; "#" starts a comment line. Text may use the
// escapes \n \t \\ \e \xHH \uHHHH \UHHHHHHHH.
func ReadCorpus(t testing.TB, path string) []Example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if len(l) < 2 || (l[0] != '+' && l[0] != '-') || l[1] != ' ' {
			t.Fatalf("%s:%d: want '+ text' or '- text'", path, n)
		}
		text, err := Unescape(l[2:])
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, Example{path, n, l[0] == '+', text})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Unescape expands the corpus escapes \n \t \\ \e \xHH \uHHHH \UHHHHHHHH;
// any other backslash is kept as it is.
func Unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'e':
			b.WriteByte(0x1b)
		case '\\':
			b.WriteByte('\\')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+n >= len(s) {
				return "", fmt.Errorf("short \\%c escape", c)
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", fmt.Errorf("bad \\%c escape: %v", c, err)
			}
			if c == 'x' {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// Score is a detector's result on one category's corpus.
type Score struct {
	Category             string
	Positives, Negatives int
	Precision, Recall    float64
}

func (s Score) String() string {
	return fmt.Sprintf("corpus %-15s positives %3d negatives %3d  precision %.3f  recall %.3f",
		s.Category, s.Positives, s.Negatives, s.Precision, s.Recall)
}

// Corpus runs d over the labelled examples in path for category, logs every
// miss and false positive, checks that each example scanned in small chunks
// finds what it finds whole, prints the score, and fails t when precision or
// recall falls below the floors or either side has fewer than 10 examples.
func Corpus(t *testing.T, path, category string, d detect.Detector, minPrecision, minRecall float64) Score {
	t.Helper()
	var tp, fp, fn, tn int
	for _, ex := range ReadCorpus(t, path) {
		found := false
		for _, m := range Whole(d, []byte(ex.Text)) {
			found = found || m.Category == category
		}
		switch {
		case ex.Want && found:
			tp++
		case ex.Want:
			fn++
			t.Logf("%s:%d: missed %q", ex.File, ex.Line, ex.Text)
		case found:
			fp++
			t.Logf("%s:%d: false positive %q", ex.File, ex.Line, ex.Text)
		default:
			tn++
		}
		if msg := SharedDigits(d, []byte(ex.Text)); msg != "" {
			t.Errorf("%s:%d: %s", ex.File, ex.Line, msg)
		}
		for _, sizes := range [][]int{{1}, {3, 7, 2, 5}, {16}} {
			if msg := Chunked(d, []byte(ex.Text), repeat(sizes, len(ex.Text))); msg != "" {
				t.Errorf("%s:%d: %s", ex.File, ex.Line, msg)
			}
		}
	}
	s := Score{category, tp + fn, fp + tn, ratio(tp, tp+fp), ratio(tp, tp+fn)}
	fmt.Println(s)
	if s.Positives < 10 || s.Negatives < 10 {
		t.Errorf("%s: corpus too small: %d positives, %d negatives (want ≥ 10 each)", category, s.Positives, s.Negatives)
	}
	if s.Precision < minPrecision || s.Recall < minRecall {
		t.Errorf("%s: precision %.3f recall %.3f below floors %.2f/%.2f", category, s.Precision, s.Recall, minPrecision, minRecall)
	}
	return s
}

func repeat(sizes []int, n int) []int {
	var out []int
	for total := 0; total < n; {
		for _, s := range sizes {
			out = append(out, s)
			total += s
		}
	}
	return out
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}
