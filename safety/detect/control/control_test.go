package control

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

type span struct {
	start, end int
	name       string
}

func spans(ms []detect.Match) []span {
	var out []span
	for _, m := range ms {
		out = append(out, span{m.Start, m.End, m.Detector})
	}
	return out
}

func TestFind(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []span
	}{
		{"plain", "hello\tworld\r\n", nil},
		{"sgr", "a\x1b[31mred\x1b[0m", []span{{1, 6, "ansi"}, {9, 13, "ansi"}}},
		{"csi private", "\x1b[?25l", []span{{0, 6, "ansi"}}},
		{"csi truecolor", "x\x1b[38;2;255;0;0mX", []span{{1, 16, "ansi"}}},
		{"csi cut by newline", "\x1b[12\nabc", []span{{0, 4, "ansi"}}},
		{"csi at end", "ok \x1b[1;3", []span{{3, 8, "ansi"}}},
		{"osc bel", "\x1b]0;title\x07after", []span{{0, 10, "osc"}}},
		{"osc st", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", []span{{0, 15, "osc"}, {19, 26, "osc"}}},
		{"osc c1 st", "\x1b]52;c;aGk=\u009c.", []span{{0, 13, "osc"}}},
		{"osc cut by newline", "\x1b]0;title\nnext", []span{{0, 9, "osc"}}},
		{"osc cut by escape", "\x1b]0;t\x1b[1m", []span{{0, 5, "osc"}, {5, 9, "ansi"}}},
		{"dcs", "\x1bPq#0;2;0;0;0\x1b\\", []span{{0, 15, "osc"}}},
		{"esc charset", "\x1b(Bx", []span{{0, 3, "ansi"}}},
		{"esc save", "\x1b7", []span{{0, 2, "ansi"}}},
		{"lone esc at end", "abc\x1b", []span{{3, 4, "c0"}}},
		{"lone esc before nonascii", "\x1b\u00e9", []span{{0, 1, "c0"}}},
		{"esc esc", "\x1b\x1b[m", []span{{0, 1, "c0"}, {1, 4, "ansi"}}},
		{"c0", "a\x00b\x07c\x08d\x7f", []span{{1, 2, "c0"}, {3, 4, "c0"}, {5, 6, "c0"}}},
		{"c1 nel", "a\u0085b", []span{{1, 3, "c1"}}},
		{"c1 csi", "\u009b31mred", []span{{0, 5, "c1"}}},
		{"c1 osc", "\u009d0;t\u009c", []span{{0, 7, "c1"}}},
		{"latin1 letters", "caf\u00e9 \u00a9 \u00b0 \u00a0", nil},
		{"raw csi", "a\x9b31mred", []span{{0, 5, "c1"}}},
		{"raw csi after match", "\x1b[0m\x9b31m", []span{{0, 5, "ansi"}}},
		{"raw csi after c0", "\x07\x9b1m", []span{{0, 2, "c0"}}},
		{"utf8 9b is a letter", "\u00db\u049b\u2e9b", nil},
		{"raw csi after multibyte", "\u00e9\x9bm", []span{{0, 4, "c1"}}},
		{"raw csi no rune before", "\x9b31m", nil},
		{"raw csi after four strays", "a\x80\x80\x80\x9bm", nil},
		{"c0 takes strays", "\x07\x80\x80x", []span{{0, 3, "c0"}}},
		{"c0 too many strays", "\x07\x80\x80\x80\x80x", nil},
		{"esc then stray", "\x1b\x80", []span{{0, 2, "c0"}}},
		{"csi too long", "\x1b[" + strings.Repeat("1;", 200) + "m", []span{{0, 2, "ansi"}}},
	}
	d := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := spans(detecttest.Whole(d, []byte(tt.text)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Find(%q) = %v, want %v", tt.text, got, tt.want)
			}
			for _, sizes := range [][]int{{1}, {2}, {3, 1}, {5}} {
				if msg := detecttest.Chunked(d, []byte(tt.text), sizes); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func TestFindFrom(t *testing.T) {
	d := New()
	text := []byte("\x1b[1mab\x1b[2m")
	var got []span
	d.Find(text, 4, func(m detect.Match) { got = append(got, span{m.Start, m.End, m.Detector}) })
	if want := []span{{6, 10, "ansi"}}; !slices.Equal(got, want) {
		t.Errorf("Find from 4 = %v, want %v", got, want)
	}
}

func TestHold(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"", 0},
		{"abc", 1},
		{"ab\u00e9", 2},
		{"ab\u20ac", 3},
		{"a\x80\x80\x80", 0},
		{"abc\x1b", 1},
		{"abc\x1b[", 2},
		{"abc\x1b[1;3", 5},
		{"abc\x1b[1;3m", 6},
		{"abc\x1b[1;3mx", 1},
		{"abc\x07", 1},
		{"x\x1b]0;title", 9},
		{"x\x1b]0;title\x1b", 10},
		{"x\x1b]0;title\xc2", 10},
		{"x\x1b]0;title\x07", 10},
		{"x\x1b(", 2},
		{"x\xc2", 1},
		{"\x1b]" + strings.Repeat("a", stringMax), 1},
	}
	d := New()
	for _, tt := range tests {
		if got := d.Hold([]byte(tt.text)); got != tt.want {
			t.Errorf("Hold(%q) = %d, want %d", tt.text, got, tt.want)
		}
	}
}

func TestCorpus(t *testing.T) {
	detecttest.Corpus(t, "testdata/corpus/control.txt", Category, New(), 0.95, 0.95)
}

func TestBadInput(t *testing.T) {
	d := New()
	inputs := map[string][]byte{
		"escapes":      bytes.Repeat([]byte{0x1b}, 1<<20),
		"csi starts":   bytes.Repeat([]byte("\x1b["), 1<<19),
		"osc starts":   bytes.Repeat([]byte("\x1b]"), 1<<19),
		"open osc":     append([]byte("\x1b]0;"), bytes.Repeat([]byte("a"), 1<<20)...),
		"raw 9b":       bytes.Repeat([]byte{0x9b}, 1<<20),
		"c2":           bytes.Repeat([]byte{0xc2}, 1<<20),
		"c1 runes":     bytes.Repeat([]byte("\u009b"), 1<<19),
		"nul":          make([]byte, 1<<20),
		"invalid utf8": bytes.Repeat([]byte{0xff, 0xfe, 0x9b, 0x80}, 1<<18),
		"letters":      bytes.Repeat([]byte("a"), 1<<20),
	}
	for name, text := range inputs {
		ms := detecttest.Whole(d, text)
		if h := d.Hold(text); h < 0 || h > detect.MaxHold {
			t.Errorf("%s: Hold = %d", name, h)
		}
		if msg := detecttest.Chunked(d, text[:4096], []int{7, 64, 1}); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
		t.Logf("%s: %d matches", name, len(ms))
	}
}

func FuzzControl(f *testing.F) {
	for _, s := range []string{
		"a\x1b[31mred\x1b[0m", "\x1b]0;t\x07", "\x1b]8;;u\x1b\\l\x1b]8;;\x1b\\", "\x1bPq\x1b\\",
		"\u009b1m\u009d0;x\u009c", "a\x9b1m", "\x1b[0m\x9b1m", "\xc3\x9b\xe2\x80\x9b", "\x07\x00\x1b(B",
		"\x1b]0;a\xc2", "\x1b]0;a\x1b", "\x1b[1;3", "\x1b ", "x\x80\x80\x9b[", "a\x7fb\x7f\x1b[1m", "中\x7f\x1b",
	} {
		f.Add([]byte(s), []byte{1, 2, 3})
	}
	d := New()
	f.Fuzz(func(t *testing.T, text, chunks []byte) {
		if msg := detecttest.Chunked(d, text, detecttest.Sizes(chunks)); msg != "" {
			t.Fatal(msg)
		}
		if msg := detecttest.SharedSpecials(d, text); msg != "" {
			t.Fatal(msg)
		}
	})
}

// mixed is the shared benchmark text with escape sequences mixed in.
func mixed() []byte {
	return detecttest.BenchText("\x1b[31m", "\x1b[0m", "\x1b]0;title\x07")
}

func BenchmarkFind(b *testing.B) {
	text := mixed()
	d := New()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		d.Find(text, 0, func(detect.Match) {})
		d.Hold(text)
	}
}

// TestChunkedFragments glues sequence fragments together at random and
// checks that every chunking finds what the whole text finds.
func TestChunkedFragments(t *testing.T) {
	frags := []string{
		"\x1b", "[", "]", "1;31", "m", "\x07", "\\", "0;title", "\u009b", "\u009c", "\u009d", "\xc2", "\x9b", "\x80",
		"a", "é", "\n", "\x00", "P", "(", "B", " ", "\u00db",
	}
	d := New()
	r := rand.New(rand.NewPCG(3, 4))
	for range 50000 {
		var b strings.Builder
		for range 1 + r.IntN(12) {
			b.WriteString(frags[r.IntN(len(frags))])
		}
		text := []byte(b.String())
		sizes := make([]int, 1+r.IntN(8))
		for i := range sizes {
			sizes[i] = 1 + r.IntN(10)
		}
		if msg := detecttest.Chunked(d, text, sizes); msg != "" {
			t.Fatalf("%q: %s", text, msg)
		}
		if msg := detecttest.SharedSpecials(d, text); msg != "" {
			t.Fatalf("%q: %s", text, msg)
		}
	}
	if msg := detecttest.SharedSpecials(d, mixed()[:64<<10]); msg != "" {
		t.Fatalf("benchmark text: %s", msg)
	}
}
