package filter

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"unicode/utf8"

	"github.com/warden-llm/warden/safety/detect"
	"github.com/warden-llm/warden/safety/detect/norm"
)

// A canary is placed in a request's system prompt so that an answer
// leaking the prompt can be recognised: an answer containing the canary
// token, or repeating a long verbatim run of the prompt, is a leak
// (category "canary"). The token is an HMAC of the prompt under the
// server's secret: the same prompt always gets the same token, so answers
// at temperature 0 stay deterministic and the backend's prompt cache keeps
// working, while nobody without the secret can predict it.

const (
	canaryHexLen   = 16 // hex digits of the token
	canaryMinBytes = 24 // system prompts shorter than this get no verbatim check
	canaryCacheMax = 64 // system prompts whose automata are kept
)

// Canary places a canary in a system prompt and arms the request's answer
// filter for it. It returns the prompt to send to the model. With no
// secret configured, or no prompt, it returns system unchanged.
func (r *Request) Canary(system string) string {
	if len(r.e.cfg.Secret) == 0 || system == "" {
		return system
	}
	c := r.e.canary(system)
	r.canary = append(r.canary, c.token)
	if c.verbatim != nil {
		r.canary = append(r.canary, c.verbatim)
	}
	return system + "\n\n(ref " + string(c.token.lit) + ")"
}

type canaryDetectors struct {
	token    *literal
	verbatim *verbatim
}

// canaryCache keeps the automata of recent system prompts: most requests
// of a deployment share a handful of them.
type canaryCache struct {
	mu sync.Mutex
	m  map[string]canaryDetectors
}

func (e *Engine) canary(system string) canaryDetectors {
	mac := hmac.New(sha256.New, e.cfg.Secret)
	mac.Write([]byte(system))
	sum := mac.Sum(nil)
	key := string(sum)
	e.canaries.mu.Lock()
	defer e.canaries.mu.Unlock()
	if c, ok := e.canaries.m[key]; ok {
		return c
	}
	c := canaryDetectors{token: &literal{lit: []byte(hex.EncodeToString(sum)[:canaryHexLen]), detector: "token"}}
	if len(system) >= canaryMinBytes {
		c.verbatim = newVerbatim([]byte(system), min(e.cfg.CanaryMinRun, len(system)))
	}
	if e.canaries.m == nil || len(e.canaries.m) >= canaryCacheMax {
		e.canaries.m = map[string]canaryDetectors{}
	}
	e.canaries.m[key] = c
	return c
}

// literal finds an ASCII token, case-insensitively.
type literal struct {
	lit      []byte // lower case
	detector string
}

func (l *literal) Category() string { return CatCanary }

func (l *literal) Find(text []byte, from int, report func(detect.Match)) {
	for i := from; i+len(l.lit) <= len(text); {
		j := bytes.IndexByte(text[i:], l.lit[0])
		if k := bytes.IndexByte(text[i:], l.lit[0]-0x20); l.lit[0] >= 'a' && k >= 0 && (j < 0 || k < j) {
			j = k
		}
		if j < 0 {
			return
		}
		i += j
		if i+len(l.lit) <= len(text) && bytes.EqualFold(text[i:i+len(l.lit)], l.lit) {
			report(detect.Match{Start: i, End: i + len(l.lit), Category: CatCanary, Detector: l.detector})
			i += len(l.lit)
			continue
		}
		i++
	}
}

// Hold keeps the longest tail that could be the start of the token.
func (l *literal) Hold(text []byte) int {
	for n := min(len(l.lit)-1, len(text)); n > 0; n-- {
		if bytes.EqualFold(text[len(text)-n:], l.lit[:n]) {
			return n
		}
	}
	return 0
}

// verbatim finds runs of at least min bytes that occur in the system
// prompt, ASCII case-insensitively and with every run of white space read
// as one space (so doubled spaces or one word per line do not hide a
// copy), with a suffix automaton of the prompt: one transition per byte of
// the answer, whatever the prompt's length. Like every detector that is
// not raw it reads the literal view of the answer (invisible characters
// dropped), and min and the hold count bytes of the collapsed text.
type verbatim struct {
	sam *sam
	min int
}

// newVerbatim builds the detector for a prompt; minRun is capped at the
// length of the prompt's collapsed form.
func newVerbatim(prompt []byte, minRun int) *verbatim {
	v, _ := norm.Literal(nil, nil, prompt, false)
	c := collapse(v)
	return &verbatim{sam: buildSAM(c), min: max(1, min(minRun, len(c)))}
}

// collapse lower-cases ASCII letters and reads each run of white space as
// one space.
func collapse(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if isSpace(c) {
			if len(out) > 0 && out[len(out)-1] == ' ' {
				continue
			}
			c = ' '
		}
		out = append(out, lower(c))
	}
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func (v *verbatim) Category() string { return CatCanary }

// collapsed walks text as collapse reads it: step gets each byte kept and
// its offset, and pos remembers the offsets of the last min+1 kept bytes.
type collapsed struct {
	pos  []int32 // ring of offsets, by kept index
	kept int     // bytes kept so far
}

// at returns the offset of the kept byte k (one of the last len(pos)).
func (c *collapsed) at(k int) int { return int(c.pos[k%len(c.pos)]) }

func (c *collapsed) walk(text []byte, step func(i int, b byte)) {
	prev := byte(0)
	for i, b := range text {
		if isSpace(b) {
			if prev == ' ' {
				continue
			}
			b = ' '
		}
		prev = b
		c.pos[c.kept%len(c.pos)] = int32(i)
		c.kept++
		step(i, lower(b))
	}
}

func (v *verbatim) Find(text []byte, from int, report func(detect.Match)) {
	st, n := 0, 0
	start, end := -1, -1 // the open run
	flush := func() {
		s, e := start, end
		for s < e && !utf8.RuneStart(text[s]) {
			s++
		}
		for e > s && e < len(text) && !utf8.RuneStart(text[e]) {
			e--
		}
		if s >= from && s < e {
			report(detect.Match{Start: s, End: e, Category: CatCanary, Detector: "verbatim"})
		}
		start, end = -1, -1
	}
	c := collapsed{pos: make([]int32, v.min+1)}
	c.walk(text, func(i int, b byte) {
		st, n = v.sam.step(st, n, b)
		if n < v.min {
			return
		}
		// A run that starts after the open one ends has n == min
		// (see the proof in the comment of Hold), so its start is in
		// the ring.
		s := c.at(c.kept - min(n, v.min))
		if start >= 0 && s > end {
			flush()
		}
		if start < 0 {
			start = s
		}
		end = i + 1
	})
	if start >= 0 {
		flush()
	}
}

// Hold keeps the tail that occurs in the prompt: it may still grow into a
// leak. (A run's length grows by at most one per byte, so the first time
// it reaches min it is exactly min long, and a run starting after the open
// one ended is just reaching min: its start is min kept bytes back.)
func (v *verbatim) Hold(text []byte) int {
	st, n := 0, 0
	tail := text[max(0, len(text)-detect.MaxHold):]
	c := collapsed{pos: make([]int32, v.min+1)}
	c.walk(tail, func(_ int, b byte) {
		st, n = v.sam.step(st, n, b)
	})
	if k := min(n, v.min); k > 0 {
		return len(tail) - c.at(c.kept-k)
	}
	return 0
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 0x20
	}
	return c
}

// sam is a suffix automaton: it recognises every substring of the text it
// was built from.
type sam struct {
	link []int32
	len  []int32
	next [][]edge
}

type edge struct {
	c  byte
	to int32
}

func (a *sam) move(st int, c byte) int {
	for _, e := range a.next[st] {
		if e.c == c {
			return int(e.to)
		}
	}
	return -1
}

// step extends the current match (state st, length n) by c and returns the
// state and length of the longest suffix that is still a substring.
func (a *sam) step(st, n int, c byte) (int, int) {
	for {
		if t := a.move(st, c); t >= 0 {
			return t, n + 1
		}
		if st == 0 {
			return 0, 0
		}
		st = int(a.link[st])
		n = int(a.len[st])
	}
}

func buildSAM(s []byte) *sam {
	a := &sam{link: []int32{-1}, len: []int32{0}, next: [][]edge{nil}}
	last := 0
	set := func(st int, c byte, to int) {
		for i, e := range a.next[st] {
			if e.c == c {
				a.next[st][i].to = int32(to)
				return
			}
		}
		a.next[st] = append(a.next[st], edge{c, int32(to)})
	}
	for _, c := range s {
		cur := len(a.len)
		a.len = append(a.len, a.len[last]+1)
		a.link = append(a.link, 0)
		a.next = append(a.next, nil)
		p := last
		for p >= 0 && a.move(p, c) < 0 {
			set(p, c, cur)
			p = int(a.link[p])
		}
		if p >= 0 {
			q := a.move(p, c)
			if a.len[p]+1 == a.len[q] {
				a.link[cur] = int32(q)
			} else {
				clone := len(a.len)
				a.len = append(a.len, a.len[p]+1)
				a.link = append(a.link, a.link[q])
				a.next = append(a.next, append([]edge(nil), a.next[q]...))
				for p >= 0 && a.move(p, c) == q {
					set(p, c, clone)
					p = int(a.link[p])
				}
				a.link[q] = int32(clone)
				a.link[cur] = int32(clone)
			}
		}
		last = cur
	}
	return a
}
