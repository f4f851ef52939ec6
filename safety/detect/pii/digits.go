package pii

// A digit run is digits joined by single separators, as card numbers and
// SSNs are written: "4111 1111 1111 1111", "078-05-1120" (spaces, dashes or
// dots; card numbers also take slashes, "4111/1111/1111/1111"). Card and SSN
// candidates are whole digit runs, never parts of one, so "1234 4111 1111
// 1111 1111" holds no card; the exceptions are runs of unbroken card-length
// numbers joined by spaces, "4012888888881881 4111111111111111", and of
// dashed or dotted SSNs joined by spaces, "536-22-1234 401-23-4567", whose
// parts are judged one by one.

// seps is a set of separator bytes.
type seps *[256]bool

var (
	ssnSeps  = sepSet(" -.")
	cardSeps = sepSet(" -./") // card numbers are also written 4111.1111... and 4111/1111...
)

func sepSet(s string) seps {
	var t [256]bool
	for _, c := range []byte(s) {
		t[c] = true
	}
	return &t
}

// runStart walks left from the digit at d to the run's first digit and
// returns it, or -1 when the run reaches more than limit bytes back.
func runStart(text []byte, d, limit int, sep seps) int {
	f := d
	for d-f <= limit {
		switch {
		case f > 0 && isDigit(text[f-1]):
			f--
		case f > 1 && sep[text[f-1]] && isDigit(text[f-2]):
			f -= 2
		default:
			return f
		}
	}
	return -1
}

// runEnd walks right from the digit at d and returns the end of the run's
// last digit.
func runEnd(text []byte, d int, sep seps) int {
	e := d
	for {
		switch {
		case e < len(text) && isDigit(text[e]):
			e++
		case e+1 < len(text) && sep[text[e]] && isDigit(text[e+1]) && e > d:
			e += 2
		default:
			return e
		}
	}
}

// runBounded reports whether the run text[f:e] stands alone: not part of
// a word, a decimal number ("0.4111…", "…1111,50") or a dashed token
// ("ID-4111…", "…1111-x").
func runBounded(text []byte, f, e int) bool {
	if f > 0 {
		c := text[f-1]
		switch {
		case isWord(c), c == '.':
			return false
		case (c == ',' || c == '-' || c == '+') && f > 1 && isWord(text[f-2]):
			return false
		}
	}
	if !endOK(text, e) {
		return false
	}
	if e+1 < len(text) {
		switch c := text[e]; {
		case (c == '.' || c == ',') && isDigit(text[e+1]):
			return false
		case c == '-' && isWord(text[e+1]):
			return false
		}
	}
	return true
}

// runHold is Hold for digit-run detectors: the trailing run, with one
// trailing byte that could join it or spoil its right boundary, while the
// run has at most maxDigits digits.
func runHold(text []byte, maxDigits int, sep seps) int {
	n := len(text)
	k := n
	if k > 0 && (sep[text[k-1]] || text[k-1] == '.' || text[k-1] == ',') {
		k--
	}
	if k == 0 || !isDigit(text[k-1]) {
		return 0
	}
	f := runStart(text, k-1, 2*maxDigits, sep)
	if f < 0 || countDigits(text[f:k]) > maxDigits {
		return 0
	}
	return n - f
}

func countDigits(b []byte) int {
	n := 0
	for _, c := range b {
		if isDigit(c) {
			n++
		}
	}
	return n
}

// runGroups splits the run text[f:e] into the lengths of its digit groups
// and reports the separator, 0 if there is none, or ok false when the run
// mixes separators or has more groups than fit in g.
func runGroups(text []byte, f, e int, g []int) (n int, sep byte, ok bool) {
	start := f
	for i := f; i <= e; i++ {
		if i < e && isDigit(text[i]) {
			continue
		}
		if n == len(g) {
			return 0, 0, false
		}
		g[n] = i - start
		n++
		if i < e {
			if sep != 0 && text[i] != sep {
				return 0, 0, false
			}
			sep = text[i]
			start = i + 1
		}
	}
	return n, sep, true
}
