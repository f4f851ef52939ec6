package pii

import (
	"net/netip"

	"github.com/warden-llm/warden/safety/detect"
)

// maxIPRun bounds a candidate run: the longest IPv6 text is 45 bytes
// ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"), an IPv4 address with
// a port 21.
const maxIPRun = 48

var ipClass = func() (t [256]bool) {
	for _, c := range []byte("0123456789abcdefABCDEF:.") {
		t[c] = true
	}
	return t
}()

// ipDot is 1 for the separators of addresses.
var ipDot = [256]byte{'.': 1, ':': 1}

// IP finds IPv4 and IPv6 addresses.
//
// A candidate is a maximal run of hex digits, ':' and '.', containing a
// decimal digit, with no letter or '_' directly before or after it;
// trailing dots (sentence ends) stay outside the span. Without a ':' the
// run must be exactly four decimal octets 0–255 without leading zeros, so
// 1.2.3.4.5, 256.1.1.1, 01.02.03.04 and v1.2.3.4 do not match; after the
// word "version", "ver", "v", "release" or "build" it is a version, not an
// address. With a ':' it must parse as an IPv6 address with at least three
// groups written (or two when the first has four digits, as in fe80::1);
// a full address needs all eight groups, so times (12:30:45) and MAC
// addresses (00:1a:2b:3c:4d:5e) never match, and neither does ::1 or a::b.
// An IPv4 address followed by :port is reported without the port. Zones
// (%eth0) are left outside the span.
//
// By default only public addresses are reported: private, loopback,
// link-local, unspecified, multicast, CGNAT (100.64.0.0/10), benchmark,
// reserved, broadcast, documentation (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32), unique-local and IPv4-compatible or
// IPv4-mapped forms of such addresses are left alone.
type IP struct {
	private bool
}

// NewIP returns the ip detector; private also reports non-public
// addresses.
func NewIP(private bool) detect.Detector { return IP{private: private} }

// Category implements detect.Detector.
func (IP) Category() string { return CategoryIP }

// Find implements detect.Detector.
func (ip IP) Find(text []byte, from int, report func(detect.Match)) {
	findIPs(ip, text, from, scanned(text), report)
}

// FindDigits implements detect.DigitFinder.
func (ip IP) FindDigits(text []byte, from int, digits *detect.Digits, report func(detect.Match)) {
	findIPs(ip, text, from, digits, report)
}

func findIPs[S digitSource](ip IP, text []byte, from int, src S, report func(detect.Match)) {
	pos := from
	for pos < len(text) {
		d := src.Next(pos)
		if d < 0 {
			return
		}
		// dots says whether the run holds a '.' or ':', without which it
		// is no address.
		r, dots := d, byte(0)
		for r > 0 && ipClass[text[r-1]] && d-r <= maxIPRun {
			r--
			dots |= ipDot[text[r]]
		}
		e := d + 1
		for e < len(text) && ipClass[text[e]] {
			dots |= ipDot[text[e]]
			e++
		}
		pos = e
		if r > 0 && isWord(text[r-1]) {
			for pos < len(text) && isWord(text[pos]) {
				pos++ // every run starting in this word is glued to it
			}
			continue
		}
		if r < from || e-r > maxIPRun || !endOK(text, e) {
			continue
		}
		if dots == 0 {
			continue
		}
		if m, ok := ip.run(text, r, e); ok {
			report(m)
		}
	}
}

var versionWords = newWordSet("version", "ver", "v", "release", "build", "firmware", "kernel")

func (ip IP) run(text []byte, r, e int) (detect.Match, bool) {
	end := e
	for end > r && text[end-1] == '.' {
		end--
	}
	run := text[r:end]
	colon := -1
	for i, c := range run {
		if c == ':' {
			colon = i
			break
		}
	}
	if colon < 0 {
		return ip.v4(text, r, end)
	}
	if m, ok := ip.v6(text, r, end); ok {
		return m, true
	}
	if run[len(run)-1] == ':' && (len(run) < 2 || run[len(run)-2] != ':') {
		if m, ok := ip.v6(text, r, end-1); ok {
			return m, true
		}
	}
	// a.b.c.d:port
	if colon >= 7 {
		for _, c := range run[colon+1:] {
			if !isDigit(c) {
				return detect.Match{}, false
			}
		}
		if len(run)-colon-1 <= 5 {
			return ip.v4(text, r, r+colon)
		}
	}
	return detect.Match{}, false
}

func (ip IP) v4(text []byte, s, e int) (detect.Match, bool) {
	var oct [4]byte
	n, v, digits := 0, 0, 0
	for i := s; i <= e; i++ {
		if i < e && isDigit(text[i]) {
			if digits > 0 && v == 0 {
				return detect.Match{}, false // leading zero
			}
			v = v*10 + int(text[i]-'0')
			digits++
			if v > 255 {
				return detect.Match{}, false
			}
			continue
		}
		if (i < e && text[i] != '.') || digits == 0 || n == 4 {
			return detect.Match{}, false
		}
		oct[n] = byte(v)
		n++
		v, digits = 0, 0
	}
	if n != 4 {
		return detect.Match{}, false
	}
	if prevWordIn(text, s, 24, 2, versionWords) {
		return detect.Match{}, false
	}
	if !ip.private && !public(netip.AddrFrom4(oct)) {
		return detect.Match{}, false
	}
	return detect.Match{Start: s, End: e, Category: CategoryIP, Detector: "ipv4"}, true
}

func (ip IP) v6(text []byte, s, e int) (detect.Match, bool) {
	run := text[s:e]
	groups, colons, double, dotted := 0, 0, false, false
	first := -1
	for i := 0; i < len(run); {
		if run[i] == ':' {
			colons++
			if i+1 < len(run) && run[i+1] == ':' {
				if double {
					return detect.Match{}, false
				}
				double = true
				colons++
				i++
			}
			i++
			continue
		}
		j := i
		for j < len(run) && run[j] != ':' {
			if run[j] == '.' {
				dotted = true
			}
			j++
		}
		if first < 0 {
			first = j - i
		}
		groups++
		i = j
	}
	if dotted {
		groups++ // the IPv4 tail stands for two groups
	}
	switch {
	case colons < 2:
		return detect.Match{}, false
	case !double && groups != 8:
		return detect.Match{}, false
	case groups < 2, groups == 2 && (first != 4 || run[0] == ':'):
		return detect.Match{}, false
	}
	a, err := netip.ParseAddr(string(run))
	if err != nil || !a.Is6() {
		return detect.Match{}, false
	}
	if !ip.private && !public(a) {
		return detect.Match{}, false
	}
	return detect.Match{Start: s, End: e, Category: CategoryIP, Detector: "ipv6"}, true
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("3fff::/20"),
}

// public reports whether a is a globally routable unicast address.
func public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Hold implements detect.Detector: a trailing run of address characters
// is held while it is short enough to be an address and not glued to a
// word.
func (IP) Hold(text []byte) int {
	r := len(text)
	for r > 0 && ipClass[text[r-1]] {
		r--
		if len(text)-r > maxIPRun {
			return 0
		}
	}
	if r > 0 && isWord(text[r-1]) {
		return 0
	}
	return len(text) - r
}
