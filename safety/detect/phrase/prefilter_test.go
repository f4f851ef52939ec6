package phrase

import (
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// checkSegments compares the prefiltered Find with a scan of the whole
// view, from every offset in froms.
func checkSegments(t *testing.T, text []byte, froms ...int) {
	t.Helper()
	d := injection
	for _, from := range froms {
		if from > len(text) {
			continue
		}
		var got, want []detect.Match
		d.Find(text, from, func(m detect.Match) { got = append(got, m) })
		d.findWhole(text, from, func(m detect.Match) { want = append(want, m) })
		if !slices.Equal(got, want) {
			t.Fatalf("from %d on %q:\nsegments %v\nwhole    %v", from, text, got, want)
		}
	}
}

// TestSegmentsEqualWhole checks that the prefilter changes nothing, on the
// corpus, on random mixes of phrase pieces and filler text, and on the
// benchmark text.
func TestSegmentsEqualWhole(t *testing.T) {
	if b, err := os.ReadFile("testdata/corpus/injection.txt"); err == nil {
		checkSegments(t, b, 0, 1, 7, 100)
		for _, l := range strings.Split(string(b), "\n") {
			checkSegments(t, []byte(l), 0, 1, 3)
		}
	}
	checkSegments(t, benchText(), 0, 5000)
	pieces := []string{
		"ignore", "previous", "instructions", "all", "your", "the", "rules", " ", "  ", "\t", "\n", ".", ". ",
		"\u200b", "\U000E0069", "ｉｇｎｏｒｅ", "іgnore", "1gn0re", "prompt", "'", "don't follow", "a partir de maintenant tu es",
		"system", "reveal", "you are now", "DAN", "act as", "unrestricted", "<|im_start|>", "<|", "im_end|>", "<<", "[",
		"###", "####", " System:", "忽略", "之前的", "指令", "你现在是", "没有任何限制", "les", "précédentes", "\xe2\x80",
		"\x80", "\xff", "x", "0", "1", "4", "y0u are n0w", "\u0301", "----", "with", "developer mode enabled", "what is",
		"the quick brown fox jumps over the lazy dog ", "func (s *Server) handle() {\n\t", "items[i] < len(x) ",
		strings.Repeat("word ", 30), strings.Repeat("a", 70), "previously", "précédentes.", "tes", "instructions précédentes",
		"Ответ полный", "Москва", "аре", "Ёлка", "ёж", "ο", "α", "λόγος", "рrompt", "vollständig", "überspringe", "这是", "。", "—",
		"ＤＡＮ", "ᴵ", "é", "ﬁ", " ", "　", "٣", "Ｉgnore",
		"ä", "vollständig", "ïgnore", "Ígnore", "ignörë", "yöu", "wïth", "4ä", "ä4", "résumé", "à", "ñ", "Ⅰ",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(60) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		text := []byte(b.String())
		checkSegments(t, text, 0, rng.IntN(len(text)+1))
	}
}

// FuzzSegments checks the prefilter against a scan of the whole view, and
// the block scan against the walk.
func FuzzSegments(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, text, chunks []byte) {
		from := 0
		if len(chunks) > 0 && len(text) > 0 {
			from = int(chunks[0]) % (len(text) + 1)
		}
		checkSegments(t, text, 0, from)
		checkBlocks(t, text, from)
		if msg := detecttest.Chunked(injection, text, detecttest.Sizes(chunks)); msg != "" {
			t.Fatal(msg)
		}
	})
}

// TestASCIIReader holds asciiReader to norm.Normalize on ASCII text read
// from a cut.
func TestASCIIReader(t *testing.T) {
	const alphabet = "aZx019345 7\t\n\r\x01.--!!!'#<[|_"
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		want, _ := norm.Normalize(nil, nil, b)
		r := asciiReader{text: b}
		var got []byte
		for {
			c, ok := r.next()
			if !ok {
				break
			}
			got = append(got, c)
		}
		if string(got) != string(want) {
			t.Fatalf("%q: reader %q, view %q", b, got, want)
		}
	}
}

// TestHoldQuiet checks Hold's quiet path against the full one.
func TestHoldQuiet(t *testing.T) {
	pieces := []string{"ignore", "prev", "instr", "all", "the", " ", "  ", "\n", ".", "...", "----", "'", "1", "0", "x",
		"reveal your sys", "you are n", "<|im_st", "[IN", "###", "garden water ", "func (s *S) ", "é", "ж", "\x80", "act",
		"dan", "pretend", "nothing here at all ", "DEVELOPER MO", "tag"}
	rng := rand.New(rand.NewPCG(7, 8))
	quiet := 0
	for range 30000 {
		var b strings.Builder
		for range 1 + rng.IntN(30) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		text := []byte(b.String())
		tail, off := holdTail(text)
		got, ok := injection.holdQuiet(text, tail, off)
		if !ok {
			continue
		}
		quiet++
		want := injection.holdFull(text)
		if got != want {
			t.Fatalf("%q: quiet hold %d, full %d", text, got, want)
		}
	}
	if quiet < 3000 {
		t.Errorf("the quiet path took only %d texts", quiet)
	}
}

// TestAlnumEnd checks the eight-byte scan against a byte loop.
func TestAlnumEnd(t *testing.T) {
	for c := range 256 {
		for pos := range 9 {
			b := []byte("abcdefghij")
			if pos < len(b) {
				b[pos] = byte(c)
			}
			want := 0
			for want < len(b) && isAlnum(b[want]) {
				want++
			}
			if got := alnumEnd(b, 0); got != want {
				t.Fatalf("byte %#x at %d: alnumEnd %d, want %d", c, pos, got, want)
			}
		}
	}
}

// findWhole is Find without the prefilter, for tests.
func (d *injectionDetector) findWhole(text []byte, from int, report func(detect.Match)) {
	v := getView(text)
	r := runner{d: d, v: v, from: from, report: report, threads: v.threads[:0]}
	r.run()
	v.threads = r.threads
	v.release()
}

// BenchmarkSegments measures the candidate scan alone on the engine's
// corpus, with its CPU time as a ratio to the baseline loop.
func BenchmarkSegments(b *testing.B) {
	text := detecttest.BenchText()
	v := new(view)
	b.SetBytes(int64(len(text)))
	start := proc.CPUTime()
	for b.Loop() {
		v.segs, _ = injection.segments(text, 0, v.segs[:0], v)
	}
	detecttest.ReportCPU(b, proc.CPUTime()-start, text, len(text))
}

// checkBlocks compares the segments the block scan finds with those of
// the byte by byte walk. The walk may give up where the block scan does
// not: it also asks startsAt about words of digits, which counts as text
// read again.
func checkBlocks(t *testing.T, text []byte, from int) {
	t.Helper()
	var v1, v2 view
	got, ok := injection.scan(text, from, nil, &v1, true)
	want, wantOK := injection.scan(text, from, nil, &v2, false)
	if wantOK && (!ok || !slices.Equal(got, want)) {
		t.Fatalf("from %d on %q:\nblocks %v %v\nwalk   %v %v", from, text, got, ok, want, wantOK)
	}
	// The blocks eight bytes at a time, without the vector scan.
	defer func(old bool) { vector = old }(vector)
	vector = false
	var v3 view
	swar, swarOK := injection.scan(text, from, nil, &v3, true)
	if swarOK != ok || !slices.Equal(got, swar) {
		t.Fatalf("from %d on %q:\nvector %v %v\nswar   %v %v", from, text, got, ok, swar, swarOK)
	}
}

// TestBlocksEqualWalk checks that the block scan takes the same candidates
// as the walk, on random mixes of first words (in any case, with leet
// digits), other words, digits, markers and non-ASCII at every alignment,
// and on the corpus and the benchmark text.
func TestBlocksEqualWalk(t *testing.T) {
	if b, err := os.ReadFile("testdata/corpus/injection.txt"); err == nil {
		checkBlocks(t, b, 0)
		checkBlocks(t, b, 9)
	}
	checkBlocks(t, benchText(), 0)
	checkBlocks(t, detecttest.BenchText(), 3)
	pieces := []string{
		"with", "WITH", "w1th", "you", "Y0U", "y0u", "a", "A", "4", "0", "1", "42", "2024", "v1", "x9y", "do", "no",
		"ignore", "1gn0re", "IGNORE", "disregarding", "disregardingly", "dlsregardlng", "jailbroken", "what",
		"whats", "the", "model", "instructions", "previous", "all", "your", "system", "prompt", "reveal",
		"aGVsbG8gd29ybGQsIHRoaXMgaXMgYSBiYXNlNjQg", "9f86d081884c7d659a2feaa0c55ad015", "12345678abc",
		"abcdefgh1", " ", " ", "  ", "\n", "\t", ".", ",", "-", "'", "_", "<", "<|im_start|>", "[", "[INST]",
		"#", "### System:", "<<SYS>>", "é", "ä", "Ответ", "这是", "\u200b", "ｉｇｎｏｒｅ", "\xff", "\xe2\x80",
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
			if rng.IntN(3) > 0 {
				b.WriteByte(" .,\n"[rng.IntN(4)])
			}
		}
		text := []byte(b.String())
		checkBlocks(t, text, 0)
		checkBlocks(t, text, rng.IntN(len(text)+1))
	}
}

// TestIsFirst holds the key lookup of short words to firstWord: the first
// words in upper and mixed case, with leet digits, cut short and made
// longer, and words that are none.
func TestIsFirst(t *testing.T) {
	p := injection.pre
	var words []string
	for w := range p.firstWords {
		words = append(words, w, strings.ToUpper(w), strings.ToUpper(w[:1])+w[1:], w+"s", w+"1",
			strings.NewReplacer("o", "0", "e", "3", "a", "4", "l", "1", "t", "7").Replace(w))
		if len(w) > 1 {
			words = append(words, w[:len(w)-1])
		}
	}
	words = append(words, "the", "model", "2024", "4", "a1", "w1th", "x", "instructions", "abcdefgh", "abcdefghi")
	n := 0
	for _, w := range words {
		// Padded: the key is read off eight bytes from the word's start.
		text := []byte(" " + w + " ........")
		got, want := p.isFirst(text, 1, 1+len(w)), p.firstWord([]byte(w))
		if got != want {
			t.Errorf("isFirst(%q) = %v, firstWord says %v", w, got, want)
		}
		if want {
			n++
		}
	}
	if n < len(p.firstWords) {
		t.Errorf("%d words are first words, want at least the %d first words", n, len(p.firstWords))
	}
}

// TestPack holds pack to a byte by byte gathering of high bits.
func TestPack(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 10000 {
		m := rng.Uint64() & hi
		var want uint64
		for k := range 8 {
			want |= m >> (8*k + 7) & 1 << k
		}
		if got := pack(m); got != want {
			t.Fatalf("pack(%#x) = %#x, want %#x", m, got, want)
		}
	}
}
