package detect

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// naiveNext and naiveNextWord are what DigitIter's methods must return.
func naiveNext(t []byte, pos int) int {
	for i := max(pos, 0); i < len(t); i++ {
		if isDigit(t[i]) {
			return i
		}
	}
	return -1
}

func naiveNextWord(t []byte, pos int) int {
	for i := max(pos, 0); i < len(t); i++ {
		if isDigit(t[i]) && (i == 0 || !isWord(t[i-1])) {
			return i
		}
	}
	return -1
}

// checkDigits checks Scan both ways: with the vector scan (where the
// machine has it) and eight bytes at a time.
func checkDigits(t *testing.T, text []byte, positions []int) {
	t.Helper()
	checkDigitsOnce(t, text, positions)
	defer SetVector(false)()
	checkDigitsOnce(t, text, positions)
}

func checkDigitsOnce(t *testing.T, text []byte, positions []int) {
	t.Helper()
	var d Digits
	d.Scan(text)
	for _, p := range positions {
		if got, want := d.Next(p), naiveNext(text, p); got != want {
			t.Fatalf("%q: Next(%d) = %d, want %d", text, p, got, want)
		}
		if got, want := d.NextWord(p), naiveNextWord(text, p); got != want {
			t.Fatalf("%q: NextWord(%d) = %d, want %d", text, p, got, want)
		}
	}
}

func TestDigits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 6))
	alphabet := []byte("0123456789 a_Z-.\xc3\xa9\x80")
	for range 2000 {
		text := make([]byte, r.IntN(70))
		for i := range text {
			text[i] = alphabet[r.IntN(len(alphabet))]
		}
		var pos []int
		for p := 0; p <= len(text); p += 1 + r.IntN(4) {
			pos = append(pos, p)
		}
		pos = append(pos, 0, len(text)/2, 1) // and backwards
		checkDigits(t, text, pos)
	}
	// Texts of many blocks: Scan takes them 32 at a time.
	for n := range 10 {
		text := make([]byte, 1000*n+r.IntN(64))
		for i := range text {
			text[i] = alphabet[r.IntN(len(alphabet))]
		}
		var pos []int
		for p := 0; p <= len(text); p++ {
			pos = append(pos, p)
		}
		checkDigits(t, text, pos)
	}
}

// TestDigitsBytes puts every byte value before, inside and after digit
// runs at every offset of the first and the second 64-byte block (Scan
// reads whole blocks eight bytes at a time).
func TestDigitsBytes(t *testing.T) {
	for c := range 256 {
		for i := range 72 {
			text := bytes.Repeat([]byte("x1 2"), 40)
			text[i] = byte(c)
			text[i+65] = byte(c)
			var pos []int
			for p := 0; p <= len(text); p++ {
				pos = append(pos, p)
			}
			checkDigits(t, text, pos)
		}
	}
}

func TestDigitsHostile(t *testing.T) {
	for name, text := range map[string][]byte{
		"digits":  bytes.Repeat([]byte("7"), 1<<20),
		"spaced":  bytes.Repeat([]byte("1 "), 1<<19),
		"letters": bytes.Repeat([]byte("a"), 1<<20),
		"invalid": bytes.Repeat([]byte{0xff, '1', 0x80}, 1<<18),
	} {
		var d Digits
		d.Scan(text)
		n := 0
		for p := d.NextWord(0); p >= 0; p = d.NextWord(p + 1) {
			n++
		}
		want := map[string]int{"digits": 1, "spaced": 1 << 19, "letters": 0, "invalid": 1 << 18}[name]
		if n != want {
			t.Errorf("%s: %d word-start digits, want %d", name, n, want)
		}
	}
}

func FuzzDigits(f *testing.F) {
	f.Add([]byte("call 415 555 2671, card 4111111111111111 x9 _7 é8"), []byte{3, 1, 0})
	f.Fuzz(func(t *testing.T, text, steps []byte) {
		var pos []int
		p := 0
		for _, s := range steps {
			p += int(s%9) - 2
			pos = append(pos, max(0, min(p, len(text))))
		}
		checkDigits(t, text, pos)
	})
}
