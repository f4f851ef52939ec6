package classifier

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
)

// Window is how many tokens the model judges at once. A text of fewer
// tokens is judged whole; a longer one in every run of Window consecutive
// tokens, so an injection in a long document is not diluted by the rest.
const Window = 64

// A Model is a logistic regression over hashed features: the probability
// that a window of n tokens is an injection is
//
//	sigmoid(Bias + Scale·Σ w[f] / √(NumFeatures·n))
//
// summed over the features f of its tokens, each reduced to the table's
// size (1<<Bits entries of int8).
type Model struct {
	Bits  int
	Scale float32
	Bias  float32
	// Threshold is the default score at or above which a window is an
	// injection (profiles may raise or lower it down to Floor); Floor is
	// the lowest the detector reports.
	Threshold, Floor float32
	// W is the table. It must not change once the model has judged a
	// text: scoring keeps table sums of recent words (see wordCache).
	W []int8

	caches sync.Pool // of *wordCache
}

const magic = "WIC1"

// header: magic, bits (uint32), window (uint32), scale, bias, threshold,
// floor (float32), little-endian; then the table.
const headerLen = 4 + 4 + 4 + 4*4

// Encode writes the model in its embedded form.
func (m *Model) Encode() []byte {
	b := make([]byte, headerLen, headerLen+len(m.W))
	copy(b, magic)
	le := binary.LittleEndian
	le.PutUint32(b[4:], uint32(m.Bits))
	le.PutUint32(b[8:], Window)
	le.PutUint32(b[12:], math.Float32bits(m.Scale))
	le.PutUint32(b[16:], math.Float32bits(m.Bias))
	le.PutUint32(b[20:], math.Float32bits(m.Threshold))
	le.PutUint32(b[24:], math.Float32bits(m.Floor))
	for _, w := range m.W {
		b = append(b, byte(w))
	}
	return b
}

// Decode reads a model written by Encode.
func Decode(b []byte) (*Model, error) {
	if len(b) < headerLen || string(b[:4]) != magic {
		return nil, errors.New("classifier: not a model file")
	}
	le := binary.LittleEndian
	m := &Model{
		Bits:      int(le.Uint32(b[4:])),
		Scale:     math.Float32frombits(le.Uint32(b[12:])),
		Bias:      math.Float32frombits(le.Uint32(b[16:])),
		Threshold: math.Float32frombits(le.Uint32(b[20:])),
		Floor:     math.Float32frombits(le.Uint32(b[24:])),
	}
	if w := le.Uint32(b[8:]); w != Window {
		return nil, fmt.Errorf("classifier: model window %d, this build reads %d", w, Window)
	}
	if m.Bits < 8 || m.Bits > 24 || len(b)-headerLen != 1<<m.Bits {
		return nil, fmt.Errorf("classifier: table of %d bytes for %d bits", len(b)-headerLen, m.Bits)
	}
	if !(m.Floor > 0 && m.Floor <= m.Threshold && m.Threshold < 1) || m.Scale <= 0 {
		return nil, fmt.Errorf("classifier: bad header (floor %v, threshold %v, scale %v)", m.Floor, m.Threshold, m.Scale)
	}
	m.W = make([]int8, 1<<m.Bits)
	for i, c := range b[headerLen:] {
		m.W[i] = int8(c)
	}
	return m, nil
}

// Index reduces a feature hash to a table index.
func (m *Model) Index(h uint64) uint32 { return uint32(h >> (64 - m.Bits)) }

// MinTokens is the fewest tokens the model judges: a word or two carry no
// intent to judge, only hash collisions (the phrase grammar judges those).
const MinTokens = 3

// ShortTokens: a text of fewer words carries too few features for its
// probability to be taken at face value ("Tell me a joke." shares most of
// its words with "tell me your system prompt"), so it is squared: such a
// text needs 0.72 to reach a threshold of 0.52.
const ShortTokens = 8

// normFloor is the fewest tokens Norm divides by, so that the few features
// of a short text do not weigh as much as a sentence's.
const normFloor = 6

// Norm is the factor a window of n tokens' feature sum is multiplied by
// before the bias is added: 1/√(NumFeatures·max(n, 6)).
func Norm(n int) float64 { return 1 / math.Sqrt(float64(NumFeatures*max(n, normFloor))) }

// LengthFeature is the feature of a window of n tokens: its length class
// (3–4, 5–8, 9–16, 17–32, 33–63 tokens, or a full window), which lets the
// model hold a short text, whose few features weigh more each, to its own
// standard.
func LengthFeature(n int) uint64 {
	c := 0
	for l := 4; l < n && c < 5; l *= 2 {
		c++
	}
	if n >= Window {
		c = 6
	}
	return mix(uint64(c), 8)
}

// Prob is the probability for a window of n tokens whose table entries
// sum to sum (the length feature's included).
func (m *Model) Prob(sum int32, n int) float64 {
	return sigmoid(float64(m.Bias) + float64(m.Scale)*float64(sum)*Norm(n))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// minSum is the least table sum for which a full window's probability
// reaches p.
func (m *Model) minSum(p float64) int32 {
	if p >= 1 {
		return math.MaxInt32
	}
	logit := math.Log(p / (1 - p))
	s := math.Ceil((logit - float64(m.Bias)) / (float64(m.Scale) * Norm(Window)))
	return int32(max(min(s, math.MaxInt32), math.MinInt32))
}

// A span is a run of overlapping windows at or above the floor.
type span struct {
	start, end int
	score      float64
}

// scan judges text and calls hit for each run of overlapping windows whose
// probability reaches p, with the run's highest probability. It returns
// the highest probability of any window. A text of fewer than Window
// tokens is one window. Full windows are compared by their integer table
// sums, so the per-token work is five table reads and an addition.
func (m *Model) scan(text []byte, p float64, hit func(span)) float64 {
	full := int32(m.W[m.Index(LengthFeature(Window))])
	sc := scorer{m: m, hit: hit, full: full, need: m.minSum(p) - full, maxSum: math.MinInt32, cur: span{start: -1}}
	c, _ := m.caches.Get().(*wordCache)
	if c == nil {
		c = new(wordCache)
	}
	sc.cache = c
	t := tokenizer{sc: &sc}
	t.run(text)
	m.caches.Put(c)
	switch {
	case sc.n < MinTokens:
		return 0
	case sc.n < Window:
		prob := m.Prob(sc.sum+int32(m.W[m.Index(LengthFeature(sc.n))]), sc.n)
		if sc.n < ShortTokens {
			prob *= prob
		}
		if prob >= p && hit != nil {
			hit(span{sc.first, sc.last, prob})
		}
		return prob
	}
	if sc.cur.start >= 0 {
		hit(sc.cur)
	}
	return m.Prob(sc.maxSum+full, Window)
}

// scorer keeps the sliding window of scan: each token's table sum and
// start, for the last Window tokens.
type scorer struct {
	m              *Model
	cache          *wordCache
	hit            func(span)
	ring           [Window]int32
	starts         [Window]int
	sum, maxSum    int32
	full, need     int32
	n, first, last int
	cur            span
}

func (sc *scorer) add(c int32, start, end int) {
	m := sc.m
	k := sc.n % Window
	sc.sum += c - sc.ring[k]
	sc.ring[k], sc.starts[k] = c, start
	if sc.n == 0 {
		sc.first = start
	}
	sc.last = end
	sc.n++
	if sc.n < Window {
		return
	}
	// A full window: the last Window tokens; the oldest is at k+1.
	sc.maxSum = max(sc.maxSum, sc.sum)
	if sc.sum < sc.need || sc.hit == nil {
		return
	}
	prob := m.Prob(sc.sum+sc.full, Window)
	first := sc.starts[(k+1)%Window]
	if sc.cur.start >= 0 && first < sc.cur.end {
		sc.cur.end, sc.cur.score = end, max(sc.cur.score, prob)
		return
	}
	if sc.cur.start >= 0 {
		sc.hit(sc.cur)
	}
	sc.cur = span{first, end, prob}
}

// cacheBits sizes the word cache: 512 words, 16 KiB.
const cacheBits = 9

// A wordCache holds, for the last words of at most eight bytes seen at
// each of its slots, what their features need of them alone: the word's
// hash and stem, and the table sum of its unigram and edge features. An
// entry is keyed by the word's bytes (see scoreShort), so a hit gives
// exactly what computing it would. It depends only on the model's table,
// so a model keeps a pool of them across texts.
type wordCache struct{ e [1 << cacheBits]cacheEntry }

type cacheEntry struct {
	key, h, stem uint64
	c            int32
}

// Score is the highest probability over the windows of text (0 for a text
// of fewer than MinTokens words).
func (m *Model) Score(text []byte) float64 { return m.scan(text, 1, nil) }
