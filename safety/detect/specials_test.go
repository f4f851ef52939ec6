package detect_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/warden-llm/warden/internal/proc"
	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/detecttest"
)

func BenchmarkSpecials(b *testing.B) {
	var sp detect.Specials
	benchScan(b, sp.Scan)
}

func BenchmarkDigits(b *testing.B) {
	var d detect.Digits
	benchScan(b, d.Scan)
}

// benchScan runs one of the shared scans over the benchmark text.
func benchScan(b *testing.B, scan func(text []byte)) {
	text := detecttest.BenchText()
	b.SetBytes(int64(len(text)))
	start := proc.CPUTime()
	for b.Loop() {
		scan(text)
	}
	detecttest.ReportCPU(b, proc.CPUTime()-start, text, len(text))
}

// special is the definition of a special byte.
func special(c byte) bool { return !(c >= 0x20 && c < 0x7f || c == '\t' || c == '\n' || c == '\r') }

// naiveSpecial is what Specials.Next and NextSpecial must return.
func naiveSpecial(text []byte, pos int) int {
	for i := max(pos, 0); i < len(text); i++ {
		if special(text[i]) {
			return i
		}
	}
	return len(text)
}

// checkSpecials checks Scan both ways: with the vector scan (where the
// machine has it) and eight bytes at a time.
func checkSpecials(t *testing.T, text []byte) {
	t.Helper()
	checkSpecialsOnce(t, text)
	defer detect.SetVector(false)()
	checkSpecialsOnce(t, text)
}

func checkSpecialsOnce(t *testing.T, text []byte) {
	t.Helper()
	var sp detect.Specials
	sp.Scan(text)
	for p := -1; p <= len(text)+1; p++ {
		want := naiveSpecial(text, p)
		if got := sp.Next(p); got != want {
			t.Fatalf("%q: Next(%d) = %d, want %d", text, p, got, want)
		}
		if got := detect.NextSpecial(text, p); got != want {
			t.Fatalf("%q: NextSpecial(%d) = %d, want %d", text, p, got, want)
		}
	}
}

func TestSpecialBytes(t *testing.T) {
	var sp detect.Specials
	for c := range 256 {
		sp.Scan([]byte{byte(c)})
		if got := sp.Next(0) == 0; got != special(byte(c)) {
			t.Errorf("byte %#x: special %v, want %v", c, got, !got)
		}
	}
}

func TestSpecials(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 7))
	alphabet := []byte("ab 0$%&'<=\t\n\r\x00\x1f\x7f\x80\xc2\xff~#;")
	for range 3000 {
		text := make([]byte, r.IntN(200))
		for i := range text {
			if r.IntN(4) == 0 {
				text[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				text[i] = 'a' + byte(r.IntN(26))
			}
		}
		checkSpecials(t, text)
	}
	// Every byte value at every position of a block.
	for c := range 256 {
		for i := range 70 {
			text := bytes.Repeat([]byte("x"), 130)
			text[i] = byte(c)
			text[i+60] = byte(c)
			checkSpecials(t, text)
		}
	}
}

func FuzzSpecials(f *testing.F) {
	f.Add([]byte("plain text with a & b, 100% <b> and\tsome\n\x00\x7f é 中"))
	f.Add(bytes.Repeat([]byte("a\n"), 70))
	f.Fuzz(func(t *testing.T, text []byte) {
		checkSpecials(t, text)
	})
}
