package norm

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/detect"

	"github.com/warden-llm/warden/safety/detect/detecttest"
)

func TestLiteral(t *testing.T) {
	for _, c := range []struct {
		in, want string
		tags     bool
	}{
		{"Plain ASCII, tabs\tand\nbreaks stay.", "Plain ASCII, tabs\tand\nbreaks stay.", false},
		{"alice.smith\u200b@gmail.com", "alice.smith@gmail.com", false},
		{"ign\x00ore al\x7fl pre\u0085vious", "ignore all previous", false},
		{"ɪɢɴᴏʀᴇ ᴀʟʟ", "ignore all", false},
		{"a\u3164b\u115fc\u1160d\uffa0e\u2800f", "a b c d e f", false},
		{"４１１１ ٤١١١ ४१११ 𝟒𝟏𝟏𝟏", "4111 4111 4111 4111", false},
		{"ＡＫＩＡ ｘ", "AKIA x", false},
		{"4111\u00a01111\u202f1111", "4111 1111 1111", false},
		{"Pаypal PАYPAL", "Paypal PAYPAL", false},
		{"Москва", "Москва", false},
		{"a\U000E0041\U000E0020b", "aA b", true},
		{"a\U000E0041\U000E0020b", "ab", false},
		{"caf\u00e9 cafe\u0301", "cafe cafe", false},
		{"x\xffy\x80z", "x yz", false},
		{"ign&#111;re &lt;|im_start|&gt; a&amp;b &#x41;&commat;&bogus; &#0; &#xD800;", "ignore <|im_start|> a&b A@&bogus; &#0; &#xD800;", false},
		{"alice%40gmail.com 100%25 5%zz %00 %C3", "alice@gmail.com 100% 5%zz %00 %C3", false},
		{"ign<b></b>ore ig<span>no</span>re <b>bold</b> a<br/>b x <y", "ignore ignore <b>bold</b> ab x <y", false},
		{"ign&#8203;ore", "ignore", false},
		{"a" + "\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b" + "b", "a b", false},
	} {
		v, offs := Literal(nil, nil, []byte(c.in), c.tags)
		if string(v) != c.want || len(offs) != len(v) {
			t.Errorf("Literal(%q, %v) = %q, want %q", c.in, c.tags, v, c.want)
		}
		var sp detect.Specials
		sp.Scan([]byte(c.in))
		if v, _ := LiteralMapScanned(nil, nil, []byte(c.in), c.tags, &sp); string(v) != c.want {
			t.Errorf("LiteralMapScanned(%q, %v) = %q, want %q", c.in, c.tags, v, c.want)
		}
		if PlainScanned([]byte(c.in), &sp) != Plain([]byte(c.in)) {
			t.Errorf("PlainScanned(%q) = %v", c.in, !Plain([]byte(c.in)))
		}
		if Plain([]byte(c.in)) != (c.in == c.want && c.in == "Plain ASCII, tabs\tand\nbreaks stay.") {
			t.Errorf("Plain(%q) = %v", c.in, Plain([]byte(c.in)))
		}
	}
}

// TestCopyBytes holds the bytes the literal view may copy as they are to
// the ones detect.Specials passes over.
func TestCopyBytes(t *testing.T) {
	var sp detect.Specials
	for c := range 256 {
		sp.Scan([]byte{byte(c)})
		if special := sp.Next(0) == 0; plainByte(byte(c)) == special {
			t.Errorf("byte %#x: plain %v, mayEscape %v, special %v", c, plainByte(byte(c)), mayEscape[c], special)
		}
	}
}

func TestPlain(t *testing.T) {
	base := []byte("0123456789abcdefghijklmnopqrstuvwxyz ~!\t\r\n")
	if !Plain(base) {
		t.Fatal("plain text not plain")
	}
	for _, c := range []byte{0, 1, 0x0b, 0x0c, 0x1f, 0x7f, 0x80, 0xff} {
		for i := range base {
			b := append([]byte(nil), base...)
			b[i] = c
			if Plain(b) {
				t.Fatalf("byte %#x at %d: plain", c, i)
			}
		}
	}
}

// FuzzNormalizedOffsets holds the views' offset maps to what the filter
// relies on to map a match back: offsets never go backwards and point
// inside the text; a span of the view that starts on a rune of the view
// maps to a span of the text that starts on a rune and ends on a rune
// (or the end), and contains every original character the view's span was
// read from.
func FuzzNormalizedOffsets(f *testing.F) {
	for _, s := range []string{
		"alice.smith\u200b@gmail.com 4111\u200b1111\u200b1111\u200b1111",
		"ign\x00ore ɪɢɴᴏʀᴇ ４１１１ ٤١١١ \u3164 ﬁne Pаypal x\xffy\x80z \U000E0041\U000E0020",
		"ign&#111;re &lt;b&gt; &#x1F600; %41%4 a<b></b>c x&amp",
		"a\u0301\u0301\u0301\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200b\u200bb \ufdfa",
	} {
		f.Add(s, uint16(3), uint16(9))
	}
	f.Fuzz(func(t *testing.T, s string, a, b uint16) {
		text := []byte(s)
		views := []struct {
			name string
			v    []byte
			offs []int32
		}{}
		for _, tags := range []bool{false, true} {
			v, offs := Literal(nil, nil, text, tags)
			sv, m := LiteralMap(nil, nil, text, tags)
			if string(sv) != string(v) {
				t.Fatalf("LiteralMap view %q, Literal %q", sv, v)
			}
			// The filter's way: the special bytes scanned over a
			// longer text, the view built over a prefix.
			var sp detect.Specials
			sp.Scan(append(text[:len(text):len(text)], "&#1"...))
			scv, scm := LiteralMapScanned(nil, nil, text, tags, &sp)
			if string(scv) != string(v) || !slices.Equal(scm, m) {
				t.Fatalf("LiteralMapScanned %q %v, LiteralMap %q %v", scv, scm, v, m)
			}
			if PlainScanned(text, &sp) != Plain(text) {
				t.Fatalf("PlainScanned(%q) = %v", text, !Plain(text))
			}
			if Plain(text) && len(text) > 0 && (string(v) != string(text) || !slices.Equal(m, OffsetMap{{0, 0}})) {
				t.Fatalf("Plain(%q), but view %q %v", text, v, m)
			}
			cur, back := m.Cursor(), m.Cursor()
			for k := range v {
				if m.At(k) != int(offs[k]) {
					t.Fatalf("LiteralMap offset %d = %d, Literal %d, in %q", k, m.At(k), offs[k], s)
				}
				// A cursor going forward, in steps from the fuzzer, and
				// one going back and forth.
				if k%(1+int(a%7)) == 0 && cur.At(k) != int(offs[k]) {
					t.Fatalf("Cursor.At(%d) = %d, want %d, in %q", k, cur.At(k), offs[k], s)
				}
				j := k
				if k%2 == 1 {
					j = len(v) - k
				}
				if back.At(j) != int(offs[j]) {
					t.Fatalf("Cursor.At(%d) back and forth = %d, want %d, in %q", j, back.At(j), offs[j], s)
				}
				if back.End(text, j+1) != m.End(text, j+1) {
					t.Fatalf("Cursor.End(%d) = %d, want %d, in %q", j+1, back.End(text, j+1), m.End(text, j+1), s)
				}
			}
			for from := 0; from <= len(text); from++ {
				want := len(v)
				for k := range v {
					if int(offs[k]) >= from {
						want = k
						break
					}
				}
				if got := m.Start(from, len(v)); got != want {
					t.Fatalf("Start(%d) = %d, want %d, in %q", from, got, want, s)
				}
			}
			views = append(views, struct {
				name string
				v    []byte
				offs []int32
			}{"literal", v, offs})
		}
		v, offs := Normalize(nil, nil, text)
		views = append(views, struct {
			name string
			v    []byte
			offs []int32
		}{"phrase", v, offs})
		for _, w := range views {
			if len(w.offs) != len(w.v) {
				t.Fatalf("%s: %d offsets for %d bytes", w.name, len(w.offs), len(w.v))
			}
			for k, o := range w.offs {
				if o < 0 || int(o) >= len(text) || k > 0 && o < w.offs[k-1] {
					t.Fatalf("%s: offset %d = %d out of order or range in %q", w.name, k, o, s)
				}
			}
			if len(w.v) == 0 {
				continue
			}
			// Every single view rune, and one span from the fuzzer.
			check := func(vs, ve int) {
				if !utf8.RuneStart(w.v[vs]) {
					return
				}
				start, end := int(w.offs[vs]), End(text, w.offs, ve)
				if w.name == "literal" {
					o := int(w.offs[ve-1])
					end = RuneEnd(text, o+srcLen(text, o))
				}
				// The phrase view reads a stray continuation byte as a
				// space; its phrases never start with one.
				stray := w.name == "phrase" && w.v[vs] == ' '
				if !utf8.RuneStart(text[start]) && !stray || start >= end || end > len(text) ||
					end < len(text) && !utf8.RuneStart(text[end]) {
					t.Fatalf("%s: view span [%d,%d) of %q maps to [%d,%d) of %q", w.name, vs, ve, w.v, start, end, s)
				}
				for k := vs; k < ve; k++ {
					o := int(w.offs[k])
					_, n := utf8.DecodeRune(text[o:])
					if w.name == "literal" {
						n = srcLen(text, o)
					}
					if o < start || o+n > end {
						t.Fatalf("%s: view byte %d from [%d,%d) outside [%d,%d) of %q", w.name, k, o, o+n, start, end, s)
					}
				}
			}
			for vs := range w.v {
				ve := vs + 1
				for ve < len(w.v) && !utf8.RuneStart(w.v[ve]) {
					ve++
				}
				check(vs, ve)
			}
			vs, ve := int(a)%len(w.v), int(b)%len(w.v)
			if vs > ve {
				vs, ve = ve, vs
			}
			check(vs, ve+1)
		}
	})
}

// BenchmarkLiteralMap builds the literal view of the engine's benchmark
// text (detecttest.BenchText), as the filter does for a window that is not
// plain, and reports its CPU time as a ratio to the baseline loop.
func BenchmarkLiteralMap(b *testing.B) {
	text := detecttest.BenchText()
	b.SetBytes(int64(len(text)))
	var dst []byte
	var m OffsetMap
	start := proc.CPUTime()
	for b.Loop() {
		dst, m = LiteralMap(dst, m, text, true)
	}
	detecttest.ReportCPU(b, proc.CPUTime()-start, text, len(text))
}

// TestKeptRunes holds the literal view's fast paths (fastRunes) for the runes it keeps
// as they are and the look-alikes to the full rules, for every rune of the Basic
// Multilingual Plane, alone and inside Latin, Cyrillic and Han words.
func TestKeptRunes(t *testing.T) {
	var b strings.Builder
	for r := rune(0x80); r < 0x10000; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		for _, ctx := range []string{" %c ", "a%cb", "д%cж", "x%c", "%cо", "中%c文", "\u200b%c\u200b"} {
			b.Reset()
			fmt.Fprintf(&b, ctx, r)
			text := []byte(b.String())
			fast := normalizer{text: text, tags: true}
			fast.literal()
			slow := normalizer{text: text, tags: true, noKept: true}
			slow.literal()
			if !bytes.Equal(fast.dst, slow.dst) || !slices.Equal(fast.offs, slow.offs) {
				t.Fatalf("%U in %q: view %q %v, want %q %v", r, text, fast.dst, fast.offs, slow.dst, slow.offs)
			}
		}
	}
}

// BenchmarkOffsetMap maps the view offsets of every eighth byte of the
// benchmark text's literal view back, in order, as the filter maps the
// matches of one detector: by binary search (At) and by a cursor.
func BenchmarkOffsetMap(b *testing.B) {
	text := detecttest.BenchText()
	v, m := LiteralMap(nil, nil, text, true)
	for _, c := range []struct {
		name string
		at   func() func(int) int
	}{
		{"at", func() func(int) int { return m.At }},
		{"cursor", func() func(int) int { c := m.Cursor(); return c.At }},
	} {
		b.Run(c.name, func(b *testing.B) {
			start := proc.CPUTime()
			for b.Loop() {
				at := c.at()
				for k := 0; k < len(v); k += 8 {
					at(k)
				}
			}
			detecttest.ReportCPU(b, proc.CPUTime()-start, text, len(text))
		})
	}
}
