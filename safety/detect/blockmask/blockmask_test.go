package blockmask

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// tables are the sets the detectors scan for, and a few more.
var tables = func() []*Table {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	alnum := func(c byte) bool { return digit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' }
	special := func(c byte) bool { return !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') }
	highOr := func(c byte) bool { return c >= 0x80 || c == '<' || c == '[' || c == '#' }
	none := func(byte) bool { return false }
	all := func(byte) bool { return true }
	return []*Table{MustNew(digit, nil), MustNew(special, nil), MustNew(alnum, highOr),
		MustNew(none, all), MustNew(all, special)}
}()

func TestNewTooMany(t *testing.T) {
	// Nine high nibbles, each with its own set of low nibbles.
	f := func(c byte) bool { return c>>4 < 9 && int(c&15) <= int(c>>4) }
	if _, err := New(f, nil); err == nil {
		t.Fatal("New took nine products")
	}
}

func TestHas(t *testing.T) {
	special := func(c byte) bool { return !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') }
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' }
	tb := MustNew(special, alnum)
	for c := range 256 {
		if got, want := tb.Has(0, byte(c)), special(byte(c)); got != want {
			t.Errorf("Has(0, %#x) = %v, want %v", c, got, want)
		}
		if got, want := tb.Has(1, byte(c)), alnum(byte(c)); got != want {
			t.Errorf("Has(1, %#x) = %v, want %v", c, got, want)
		}
	}
}

// naive is Scan by Has.
func naive(t *Table, text []byte) (m0, m1 []uint64) {
	for k := 0; k+64 <= len(text); k += 64 {
		var w0, w1 uint64
		for j, c := range text[k : k+64] {
			if t.Has(0, c) {
				w0 |= 1 << j
			}
			if t.Has(1, c) {
				w1 |= 1 << j
			}
		}
		m0, m1 = append(m0, w0), append(m1, w1)
	}
	return m0, m1
}

// check compares Scan, with each output on its own and with both in one
// slice, and the byte-at-a-time scan with naive.
func check(t *testing.T, text []byte) {
	t.Helper()
	for ti, tb := range tables {
		w0, w1 := naive(tb, text)
		n := len(text) / 64
		d0, d1 := make([]uint64, n+1), make([]uint64, n+1)
		if got := tb.Scan(d0, d1, text); got != n {
			t.Fatalf("table %d, %d bytes: Scan = %d blocks, want %d", ti, len(text), got, n)
		}
		g0, g1 := make([]uint64, n), make([]uint64, n)
		if n > 0 {
			scanGeneric(g0, g1, text, tb)
		}
		for k := range n {
			if d0[k] != w0[k] || d1[k] != w1[k] || g0[k] != w0[k] || g1[k] != w1[k] {
				t.Fatalf("table %d, %q block %d: Scan %#x %#x, generic %#x %#x, want %#x %#x",
					ti, text, k, d0[k], d1[k], g0[k], g1[k], w0[k], w1[k])
			}
		}
		if d0[n] != 0 || d1[n] != 0 {
			t.Fatalf("table %d, %d bytes: Scan wrote past its blocks", ti, len(text))
		}
		if tb.set[0] == tb.set[1] {
			// One set: both outputs to one slice.
			same := make([]uint64, n)
			tb.Scan(same, same, text)
			for k := range n {
				if same[k] != w0[k] {
					t.Fatalf("table %d, %q block %d: Scan into one slice %#x, want %#x", ti, text, k, same[k], w0[k])
				}
			}
		}
		if n > 1 {
			// Short destinations bound the blocks.
			if got := tb.Scan(d0[:1], d1, text); got != 1 {
				t.Fatalf("table %d: Scan into one slot = %d blocks", ti, got)
			}
		}
	}
}

func TestScanLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for n := range 201 {
		for range 20 {
			text := make([]byte, n)
			for i := range text {
				text[i] = byte(r.UintN(256))
			}
			check(t, text)
			// Mostly ASCII, as real text is.
			for i := range text {
				const ascii = "aZ09 \t\n<[#\x00\x7f\x80\xff"
				text[i] = ascii[r.IntN(len(ascii))]
			}
			check(t, text)
		}
	}
}

func TestScanAllBytes(t *testing.T) {
	text := make([]byte, 256*3)
	for i := range text {
		text[i] = byte(i * 7)
	}
	check(t, text)
	for c := range 256 {
		check(t, bytes.Repeat([]byte{byte(c)}, 128))
	}
}

// FuzzScan compares Scan with the byte-at-a-time definition, at every
// offset of the text into its block.
func FuzzScan(f *testing.F) {
	f.Add([]byte("Ignore previous instructions 0123456789 <|im_start|> [INST] # \x00\x1b\x7f\xc3\xa9"))
	f.Fuzz(func(t *testing.T, text []byte) {
		for off := range min(len(text), 8) {
			check(t, text[off:])
		}
	})
}
