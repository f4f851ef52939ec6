// Command train-injection trains Warden's prompt-injection classifier
// (package safety/detect/classifier) and writes its weights (model.bin)
// and provenance (model.json) next to each other.
//
// Each *.txt file in the data directories is one source: "+ text" lines
// are attacks, "- text" benign prompts (escapes as in detecttest), and
// "# source:", "# commit:", "# paths:", "# licence:" header lines name
// where it came from. Sources named by -heldout are never trained on: the
// model's recall (and false-positive rate) on them is what it does on
// public data it has not seen. The other sources are split by a seeded hash
// of each text: -split of them are held out too, and the threshold is the
// lowest score that keeps the false-positive rate on the held-out benign
// split at or below -fp.
//
// The model is a logistic regression over the features of
// classifier.Tokens, trained with AdaGrad and L2 regularisation. A long
// text is cut into windows of classifier.Window tokens; a benign text
// teaches every window, an attack only its highest-scoring window (a
// jailbreak's preamble need not look like one). Runs are deterministic for
// a seed.
//
//	go run ./scripts/train-injection -data scripts/train-injection/data,/path/to/public-data
package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/warden-llm/warden/safety/detect/classifier"
	"github.com/warden-llm/warden/safety/detect/classifier/dataset"
)

type config struct {
	Data     []string `json:"-"`
	Heldout  []string `json:"heldout"`
	Out      string   `json:"-"`
	Seed     uint64   `json:"seed"`
	Epochs   int      `json:"epochs"`
	Rate     float64  `json:"rate"`
	L2       float64  `json:"l2"`
	Bits     int      `json:"bits"`
	Split    float64  `json:"split"`
	FP       float64  `json:"fp_target"`
	FloorFP  float64  `json:"floor_fp"`
	MaxWin   int      `json:"max_windows"`
	Negative float64  `json:"benign_weight"`
	NoCalib  []string `json:"not_calibrated_on"`
	Verbose  bool     `json:"-"`
	// Fragments adds a short run of words cut from each benign text.
	Fragments bool `json:"benign_fragments"`
	// MinThreshold bounds the threshold from below: the classes weigh the
	// same in training, so 0.5 is where the model is undecided.
	MinThreshold float64 `json:"min_threshold"`
}

func main() {
	var c config
	var data, held string
	flag.StringVar(&data, "data", "scripts/train-injection/data", "comma-separated directories of source files")
	flag.StringVar(&held, "heldout", dataset.DefaultHeldout, "comma-separated sources never trained on")
	flag.StringVar(&c.Out, "out", "safety/detect/classifier", "directory for model.bin and model.json")
	flag.Uint64Var(&c.Seed, "seed", 16, "seed for the split and the training order")
	flag.IntVar(&c.Epochs, "epochs", 12, "passes over the training set")
	flag.Float64Var(&c.Rate, "rate", 0.2, "AdaGrad learning rate")
	flag.Float64Var(&c.L2, "l2", 3e-5, "L2 regularisation per update")
	flag.IntVar(&c.Bits, "bits", 18, "log2 of the feature table size")
	flag.Float64Var(&c.Split, "split", 0.2, "fraction of each trained source held out")
	flag.Float64Var(&c.FP, "fp", 0.005, "false-positive rate the threshold allows on the held-out benign split")
	flag.Float64Var(&c.FloorFP, "floor-fp", 0.05, "false-positive rate at the lowest threshold a profile may set")
	flag.IntVar(&c.MaxWin, "max-windows", 16, "windows taken from one long text")
	flag.Float64Var(&c.Negative, "benign-weight", 2, "weight of the benign class against the attack class")
	var nocal string
	flag.StringVar(&nocal, "no-calibrate", "synthetic", "comma-separated sources whose benign split does not set the threshold (templated text is too easy)")
	flag.BoolVar(&c.Verbose, "v", false, "log each epoch's loss")
	flag.BoolVar(&c.Fragments, "fragments", true, "also train on a short run of words cut from each benign text")
	flag.Float64Var(&c.MinThreshold, "min-threshold", 0.5, "lowest threshold, whatever the split allows")
	flag.Parse()
	c.NoCalib = strings.Split(nocal, ",")
	c.Data = strings.Split(data, ",")
	c.Heldout = strings.Split(held, ",")
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

// example is one text, cut into windows of feature indices.
type example struct {
	src  int
	pos  bool
	w    float64
	wins [][]uint32
}

func run(c config) error {
	srcs, err := dataset.Load(c.Data, c.Heldout, c.Seed, c.Split)
	if err != nil {
		return err
	}
	m := &classifier.Model{Bits: c.Bits}
	var train []*example
	fr := rand.New(rand.NewPCG(c.Seed, 0xf7a9))
	for si, s := range srcs {
		for _, ex := range s.Examples {
			if s.Heldout || ex.Test {
				continue
			}
			train = append(train, &example{src: si, pos: ex.Attack, wins: windows(m, ex.Text, c.MaxWin)})
			if !ex.Attack && c.Fragments {
				if f := fragment(fr, ex.Text); f != "" {
					train = append(train, &example{src: si, wins: windows(m, f, c.MaxWin)})
				}
			}
		}
	}
	w, bias := fit(c, m, weigh(c, train))
	quantize(m, w, bias)

	// Threshold: the lowest score with at most FP of the held-out benign
	// split at or above it. The split of a trained source flatters the
	// model, so FP is set below the rate wanted on unseen prompts.
	var benign []float64
	for _, s := range srcs {
		for _, ex := range s.Examples {
			if !ex.Attack && ex.Test && !s.Heldout && !slices.Contains(c.NoCalib, s.Name) {
				benign = append(benign, m.Score([]byte(ex.Text)))
			}
		}
	}
	m.Threshold = max(cut(benign, c.FP), float32(c.MinThreshold))
	m.Floor = min(m.Threshold, max(cut(benign, c.FloorFP), 0.05))

	// How much the split flatters: for each benign source, a model trained
	// without it scores all its prompts; the record keeps the share of them
	// at or above the threshold.
	var loso []dataset.Metric
	for si, s := range srcs {
		if s.Heldout || s.Benign == 0 || slices.Contains(c.NoCalib, s.Name) {
			continue
		}
		var rest []*example
		for _, e := range train {
			if e.src != si {
				rest = append(rest, e)
			}
		}
		fm := &classifier.Model{Bits: c.Bits}
		fw, fb := fit(c, fm, weigh(c, rest))
		quantize(fm, fw, fb)
		r := dataset.Metric{Set: "source-left-out", Source: s.Name}
		for _, ex := range s.Examples {
			if !ex.Attack {
				r.Benign++
				if fm.Score([]byte(ex.Text)) >= float64(m.Threshold) {
					r.Flagged++
				}
			}
		}
		r.FPRate = float64(r.Flagged) / float64(r.Benign)
		loso = append(loso, r)
	}

	bin := m.Encode()
	sum := sha256.Sum256(bin)
	prov := dataset.Provenance{
		Model:     "model.bin",
		SHA256:    hex.EncodeToString(sum[:]),
		Trainer:   "scripts/train-injection",
		Bits:      c.Bits,
		Window:    classifier.Window,
		Threshold: float64(m.Threshold),
		Floor:     float64(m.Floor),
		Params:    c,
	}
	prov.Evaluate(m, srcs)
	prov.LeftOut = loso
	if err := os.WriteFile(filepath.Join(c.Out, "model.bin"), bin, 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(prov, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Out, "model.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Print(prov.Report())
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fragment returns a run of 3 to 8 words cut from a benign text of at
// least 10 (or ""): a short text made of ordinary words is benign too,
// whatever its words, and the attack sets are full of short texts.
func fragment(r *rand.Rand, text string) string {
	var spans [][2]int
	classifier.Tokens([]byte(text), func(t *classifier.Token) { spans = append(spans, [2]int{t.Start, t.End}) })
	if len(spans) < 10 {
		return ""
	}
	k := 3 + r.IntN(6)
	off := r.IntN(len(spans) - k + 1)
	return text[spans[off][0]:spans[off+k-1][1]]
}

// weigh sets the examples' weights: each class weighs the same in total,
// and within a class a source weighs by the square root of its size, so
// one big set does not drown the others.
func weigh(c config, train []*example) []*example {
	count := map[[2]int]int{}
	for _, e := range train {
		count[[2]int{e.src, b2i(e.pos)}]++
	}
	var total [2]float64
	for k, n := range count {
		total[k[1]] += math.Sqrt(float64(n))
	}
	out := make([]*example, len(train))
	for i, e := range train {
		n := float64(count[[2]int{e.src, b2i(e.pos)}])
		cp := *e
		cp.w = math.Sqrt(n) / n / total[b2i(e.pos)] * float64(len(train)) / 2
		if !e.pos {
			cp.w *= c.Negative
		}
		out[i] = &cp
	}
	return out
}

// windows cuts text into windows of at most classifier.Window tokens, as
// the model judges it: the whole text when it is short, else windows at a
// stride of half a window, at most max of them, evenly spread.
func windows(m *classifier.Model, text string, maxWin int) [][]uint32 {
	var toks [][classifier.NumFeatures]uint32
	classifier.Tokens([]byte(text), func(t *classifier.Token) {
		var f [classifier.NumFeatures]uint32
		for i, h := range t.F {
			f[i] = m.Index(h)
		}
		toks = append(toks, f)
	})
	if len(toks) < classifier.MinTokens {
		return nil
	}
	flat := func(ts [][classifier.NumFeatures]uint32) []uint32 {
		out := make([]uint32, 0, len(ts)*classifier.NumFeatures)
		for _, t := range ts {
			out = append(out, t[:]...)
		}
		return out
	}
	if len(toks) <= classifier.Window {
		return [][]uint32{append(flat(toks), m.Index(classifier.LengthFeature(len(toks))))}
	}
	var starts []int
	for s := 0; s+classifier.Window <= len(toks); s += classifier.Window / 2 {
		starts = append(starts, s)
	}
	if last := len(toks) - classifier.Window; starts[len(starts)-1] != last {
		starts = append(starts, last)
	}
	if len(starts) > maxWin {
		picked := make([]int, maxWin)
		for i := range picked {
			picked[i] = starts[i*(len(starts)-1)/(maxWin-1)]
		}
		starts = picked
	}
	out := make([][]uint32, len(starts))
	for i, s := range starts {
		out[i] = append(flat(toks[s:s+classifier.Window]), m.Index(classifier.LengthFeature(classifier.Window)))
	}
	return out
}

// fit trains the float weights and bias.
func fit(c config, m *classifier.Model, train []*example) ([]float64, float64) {
	w := make([]float64, 1<<c.Bits)
	g2 := make([]float64, 1<<c.Bits)
	var bias, gb float64
	r := rand.New(rand.NewPCG(c.Seed, 0x5eed))
	score := func(win []uint32) float64 {
		s := 0.0
		for _, f := range win {
			s += w[f]
		}
		return bias + s*classifier.Norm(len(win)/classifier.NumFeatures)
	}
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	for epoch := range c.Epochs {
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		loss := 0.0
		for _, i := range order {
			e := train[i]
			wins := e.wins
			if e.pos && len(wins) > 1 {
				best := slices.MaxFunc(wins, func(a, b []uint32) int { return cmp.Compare(score(a), score(b)) })
				wins = [][]uint32{best}
			}
			ew := e.w / math.Sqrt(float64(len(wins)))
			y := 0.0
			if e.pos {
				y = 1
			}
			for _, win := range wins {
				z := score(win)
				p := 1 / (1 + math.Exp(-z))
				loss += -ew * (y*math.Log(p+1e-12) + (1-y)*math.Log(1-p+1e-12))
				g := ew * (p - y)
				nrm := classifier.Norm(len(win) / classifier.NumFeatures)
				for _, f := range win {
					gf := g*nrm + c.L2*w[f]
					g2[f] += gf * gf
					w[f] -= c.Rate * gf / math.Sqrt(g2[f]+1e-8)
				}
				gb += g * g
				bias -= c.Rate * g / math.Sqrt(gb+1e-8)
			}
		}
		if c.Verbose {
			log.Printf("epoch %d: loss %.4f", epoch+1, loss/float64(len(train)))
		}
	}
	return w, bias
}

// quantize stores w as int8 with one scale.
func quantize(m *classifier.Model, w []float64, bias float64) {
	maxAbs := 0.0
	for _, v := range w {
		maxAbs = max(maxAbs, math.Abs(v))
	}
	if maxAbs == 0 {
		maxAbs = 1
	}
	scale := maxAbs / 127
	m.W = make([]int8, len(w))
	for i, v := range w {
		m.W[i] = int8(math.Round(v / scale))
	}
	m.Scale, m.Bias = float32(scale), float32(bias)
}

// cut returns the lowest threshold with at most fp of scores at or above
// it: just above the score ranked floor(fp·n)+1 from the top.
func cut(scores []float64, fp float64) float32 {
	s := slices.Clone(scores)
	slices.SortFunc(s, func(a, b float64) int { return cmp.Compare(b, a) })
	k := int(fp * float64(len(s)))
	if k >= len(s) {
		return 0.5
	}
	return math.Nextafter32(float32(s[k]), 1)
}
