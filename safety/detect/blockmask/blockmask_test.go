package blockmask

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// tables are the sets the detectors scan for, and a few more.
var tables = func() []*Table {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	alnum := func(c byte) bool { return digit(c) || c|0x20 >= 'a' && c|0x20 <= 'z' }
	special := func(c byte) bool { return !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') }
	highOr := func(c byte) bool { return c >= 0x80 || c == '<' || c == '[' || c == '#' }
	none := func(byte) bool { return false }
	all := func(byte) bool { return true }
	return []*Table{MustNew(digit), MustNew(special), MustNew(alnum, highOr),
		MustNew(none, all), MustNew(all, special)}
}()

// TestLayout holds Table to the offsets scan_amd64.s reads.
func TestLayout(t *testing.T) {
	var tb Table
	if unsafe.Offsetof(tb.lo) != 0 || unsafe.Offsetof(tb.hi) != 16 || unsafe.Offsetof(tb.set) != 32 || unsafe.Offsetof(tb.n) != 34 {
		t.Fatalf("Table layout: lo %d, hi %d, set %d, n %d; scan_amd64.s reads 0, 16, 32, 34",
			unsafe.Offsetof(tb.lo), unsafe.Offsetof(tb.hi), unsafe.Offsetof(tb.set), unsafe.Offsetof(tb.n))
	}
}

func TestNewTooMany(t *testing.T) {
	// Nine high nibbles, each with its own set of low nibbles.
	f := func(c byte) bool { return c>>4 < 9 && int(c&15) <= int(c>>4) }
	if _, err := New(f); err == nil {
		t.Fatal("New took nine products")
	}
	g := func(c byte) bool { return c == 'a' }
	if _, err := New(g, g, g); err == nil {
		t.Fatal("New took three sets")
	}
	if _, err := New(); err == nil {
		t.Fatal("New took no set")
	}
}

func TestHas(t *testing.T) {
	special := func(c byte) bool { return !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') }
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' }
	tb := MustNew(special, alnum)
	for c := range 256 {
		for o, f := range []func(byte) bool{special, alnum} {
			if got, want := tb.Has(o, byte(c)), f(byte(c)); got != want {
				t.Errorf("Has(%d, %#x) = %v, want %v", o, c, got, want)
			}
		}
	}
}

// naive is ScanAll by Has: Scan's blocks, and a last partial one.
func naive(t *Table, text []byte) [][]uint64 {
	m := make([][]uint64, t.n)
	for k := 0; k < len(text); k += 64 {
		for o := range m {
			var w uint64
			for j, c := range text[k:min(k+64, len(text))] {
				if t.Has(o, c) {
					w |= 1 << j
				}
			}
			m[o] = append(m[o], w)
		}
	}
	return m
}

// check compares Scan and the byte-at-a-time scan with naive.
func check(t *testing.T, text []byte) {
	t.Helper()
	for ti, tb := range tables {
		want := naive(tb, text)
		n := len(text) / 64
		got, gen := make([][]uint64, tb.n), make([][]uint64, tb.n)
		for o := range got {
			got[o], gen[o] = make([]uint64, n+1), make([]uint64, n)
		}
		if k := tb.Scan(text, got...); k != n {
			t.Fatalf("table %d, %d bytes: Scan = %d blocks, want %d", ti, len(text), k, n)
		}
		scanGeneric(gen, text, n, tb)
		for o := range got {
			for k := range n {
				if got[o][k] != want[o][k] || gen[o][k] != want[o][k] {
					t.Fatalf("table %d, %q output %d block %d: Scan %#x, generic %#x, want %#x",
						ti, text, o, k, got[o][k], gen[o][k], want[o][k])
				}
			}
			if got[o][n] != 0 {
				t.Fatalf("table %d, %d bytes: Scan wrote past its blocks", ti, len(text))
			}
		}
		all := make([][]uint64, tb.n)
		for o := range all {
			all[o] = make([]uint64, len(want[o])+1)
		}
		if k := tb.ScanAll(text, all...); k != len(want[0]) {
			t.Fatalf("table %d, %d bytes: ScanAll = %d blocks, want %d", ti, len(text), k, len(want[0]))
		}
		for o := range all {
			if !slices.Equal(all[o][:len(want[o])], want[o]) || all[o][len(want[o])] != 0 {
				t.Fatalf("table %d, %q output %d: ScanAll %#x, want %#x", ti, text, o, all[o], want[o])
			}
		}
		if n > 1 {
			// A short destination bounds the blocks.
			short := slices.Clone(got)
			short[0] = short[0][:1]
			if k := tb.Scan(text, short...); k != 1 {
				t.Fatalf("table %d: Scan into one slot = %d blocks", ti, k)
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
