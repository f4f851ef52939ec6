package models

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"

	"github.com/ollama/ollama/fs/ggml"
)

// DemoName is the name the demo model is created under in the backend.
const DemoName = "warden-demo"

// Shape of the demo model. It is a llama-architecture transformer with
// random weights: its text is gibberish, but it exercises the real runtime.
const (
	DemoEmbeddingLength = 64   // width of the residual stream and of embeddings
	DemoContextLength   = 8192 // trained context; Ollama caps num_ctx at this
	DemoBlockCount      = 2
	DemoHeadCount       = 4
	DemoFeedForward     = 192
	DemoVocabSize       = 256 + 2 // one token per byte, then BOS and EOS

	// DemoBOS and DemoEOS are the token ids of the two special tokens.
	DemoBOS = 256
	DemoEOS = 257
)

// DemoTemplate is the demo model's chat template. A lone user message (a
// completion's prompt, or a one-message chat) passes through unchanged;
// anything more renders the system prompt, the tools (one JSON object a
// line), and each message under a role marker with its tool calls, so
// that Ollama accepts tools for the model (it refuses them for a template
// that does not render .Tools) and an agent client can drive it end to
// end. The markers are string constants inside actions: Warden's prompt
// estimate counts a template's literal text as written into every prompt,
// and these are written only around messages, within the allowance the
// estimate makes for each (at most 16 bytes with their newlines).
const DemoTemplate = `{{- if or .System .Tools (gt (len .Messages) 1) -}}
{{- if .System }}{{ "<|system|>\n" }}{{ .System }}{{ "\n" }}{{ end }}
{{- if .Tools }}{{ "<|tools|>\n" }}{{ range .Tools }}{{ json . }}{{ "\n" }}{{ end }}{{ end }}
{{- range .Messages }}{{ if ne .Role "system" }}{{ "<|" }}{{ .Role }}{{ "|>\n" }}{{ .Content }}
{{- range .ToolCalls }}{{ "{\"name\":" }}{{ json .Function.Name }}{{ ",\"arguments\":" }}{{ json .Function.Arguments }}{{ "}" }}{{ end }}{{ "\n" }}
{{- end }}{{ end }}{{ "<|assistant|>\n" }}
{{- else }}{{ range .Messages }}{{ .Content }}{{ end }}{{ end -}}`

// Knobs that shape the output distribution. The residual stream carries
// anchor in dimension 0 for every token; no layer writes to that dimension,
// so after the final RMS norm it stays large and positive. Output rows of
// tokens that must never be produced read it with weight -banned, which
// buries their logits far below the rest; EOS reads it with -eosPenalty so
// that it stays possible under sampling but is never the greedy choice: at
// temperature 0 the model runs until its output cap (measured: 20,000 tokens
// from several prompts), which is what the output-cap and cancellation tests
// need. With 0.6 it stopped after 300-1,600 tokens.
const (
	anchor     = 8
	banned     = 16
	eosPenalty = 8.0
	seedHi     = 0x77617264656e2d64 // "warden-d"
	seedLo     = 0x656d6f2d76310000 // "emo-v1"
)

// DemoGGUF returns the demo model as GGUF bytes. The result is identical on
// every call and every machine.
func DemoGGUF() ([]byte, error) {
	// ggml.WriteGGUF needs an *os.File: it seeks, and writes tensors at
	// offsets concurrently.
	f, err := os.CreateTemp("", "warden-demo-*.gguf")
	if err != nil {
		return nil, fmt.Errorf("create temp gguf: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	if err := ggml.WriteGGUF(f, demoKV(), demoTensors()); err != nil {
		return nil, fmt.Errorf("write gguf: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind gguf: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read gguf: %w", err)
	}
	return b, nil
}

// demoKV is the metadata llama.cpp's loader (the engine Ollama 0.17.4 runs
// for the llama architecture) and Ollama's own GGUF reader need.
func demoKV() ggml.KV {
	tokens := make([]string, DemoVocabSize)
	types := make([]int32, DemoVocabSize)
	for b, s := range byteTokens() {
		tokens[b] = s
		types[b] = 1 // normal
	}
	tokens[DemoBOS], types[DemoBOS] = "<|startoftext|>", 3 // control
	tokens[DemoEOS], types[DemoEOS] = "<|endoftext|>", 3

	return ggml.KV{
		"general.architecture": "llama",
		"general.name":         DemoName,
		"general.file_type":    uint32(ggml.FileTypeF32),
		"general.alignment":    uint32(32),

		"llama.context_length":                   uint32(DemoContextLength),
		"llama.embedding_length":                 uint32(DemoEmbeddingLength),
		"llama.block_count":                      uint32(DemoBlockCount),
		"llama.feed_forward_length":              uint32(DemoFeedForward),
		"llama.attention.head_count":             uint32(DemoHeadCount),
		"llama.attention.head_count_kv":          uint32(DemoHeadCount),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(DemoEmbeddingLength / DemoHeadCount),
		"llama.rope.freq_base":                   float32(10000),
		"llama.vocab_size":                       uint32(DemoVocabSize),

		"tokenizer.ggml.model":            "gpt2",
		"tokenizer.ggml.pre":              "default",
		"tokenizer.ggml.tokens":           tokens,
		"tokenizer.ggml.token_type":       types,
		"tokenizer.ggml.merges":           []string{},
		"tokenizer.ggml.bos_token_id":     uint32(DemoBOS),
		"tokenizer.ggml.eos_token_id":     uint32(DemoEOS),
		"tokenizer.ggml.add_bos_token":    true,
		"tokenizer.ggml.add_eos_token":    false,
		"tokenizer.ggml.padding_token_id": uint32(DemoEOS),
	}
}

// byteTokens returns, for each byte, the text of its token under GPT-2's
// byte-to-unicode mapping: printable Latin-1 bytes stand for themselves and
// the rest are shifted to U+0100 and up, in byte order. llama.cpp's
// byte-level BPE maps input bytes through this table before looking tokens
// up, and maps back when it renders a token.
func byteTokens() [256]string {
	var out [256]string
	n := 0
	for b := range 256 {
		r := rune(b)
		if !(b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE) {
			r = rune(256 + n)
			n++
		}
		out[b] = string(r)
	}
	return out
}

// allowed reports whether the model may emit token id.
func allowed(id int) bool {
	switch {
	case id == DemoEOS:
		return true
	case id == '\n' || id == '\t':
		return true
	default:
		return id >= 0x20 && id < 0x7F
	}
}

// f32 is a tensor of little-endian float32 values.
type f32 []float32

// WriteTo implements io.WriterTo for ggml.Tensor.
func (t f32) WriteTo(w io.Writer) (int64, error) {
	b := make([]byte, 4*len(t))
	for i, v := range t {
		u := math.Float32bits(v)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	n, err := w.Write(b)
	return int64(n), err
}

// weights draws uniform values from a fixed-seed PCG stream. It avoids
// NormFloat64 and friends, whose algorithms the standard library does not
// promise to keep, so the file stays byte-identical across Go releases.
type weights struct{ r *rand.PCG }

// uniform returns n values uniform on [-a, a).
func (g weights) uniform(n int, a float32) f32 {
	out := make(f32, n)
	for i := range out {
		u := float32(g.r.Uint64()>>40) / (1 << 24) // [0, 1), exact in float32
		out[i] = (2*u - 1) * a
	}
	return out
}

// matrix returns a rows×cols matrix (ggml shape {cols, rows}) whose entries
// have standard deviation std.
func (g weights) matrix(rows, cols int, std float32) f32 {
	return g.uniform(rows*cols, std*float32(math.Sqrt(3)))
}

func ones(n int) f32 {
	out := make(f32, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

func tensor(name string, data f32, shape ...uint64) *ggml.Tensor {
	return &ggml.Tensor{Name: name, Kind: uint32(ggml.TensorTypeF32), Shape: shape, WriterTo: data}
}

func demoTensors() []*ggml.Tensor {
	const (
		d = DemoEmbeddingLength
		v = DemoVocabSize
		h = DemoFeedForward
	)
	g := weights{rand.NewPCG(seedHi, seedLo)}

	// Token embeddings: random, except the anchor in dimension 0.
	embd := g.matrix(v, d, 1)
	for t := range v {
		embd[t*d] = anchor
	}

	// Layer norms ignore dimension 0 so the anchor does not steer attention.
	layerNorm := ones(d)
	layerNorm[0] = 0

	ts := []*ggml.Tensor{tensor("token_embd.weight", embd, d, v)}
	for i := range DemoBlockCount {
		p := fmt.Sprintf("blk.%d.", i)
		wo := g.matrix(d, d, 0.25)
		down := g.matrix(d, h, 0.25)
		clear(wo[:d])   // output row 0: nothing writes to the anchor
		clear(down[:h]) // likewise for the feed-forward output
		ts = append(ts,
			tensor(p+"attn_norm.weight", layerNorm, d),
			tensor(p+"attn_q.weight", g.matrix(d, d, 0.4), d, d),
			tensor(p+"attn_k.weight", g.matrix(d, d, 0.4), d, d),
			tensor(p+"attn_v.weight", g.matrix(d, d, 0.25), d, d),
			tensor(p+"attn_output.weight", wo, d, d),
			tensor(p+"ffn_norm.weight", layerNorm, d),
			tensor(p+"ffn_gate.weight", g.matrix(h, d, 0.25), d, h),
			tensor(p+"ffn_up.weight", g.matrix(h, d, 0.25), d, h),
			tensor(p+"ffn_down.weight", down, h, d),
		)
	}

	// Output projection: random rows; dimension 0 decides what may appear.
	out := g.matrix(v, d, 0.5)
	for t := range v {
		switch {
		case t == DemoEOS:
			out[t*d] = -eosPenalty
		case allowed(t):
			out[t*d] = 0
		default:
			out[t*d] = -banned
		}
	}
	return append(ts,
		tensor("output_norm.weight", ones(d), d),
		tensor("output.weight", out, d, v),
	)
}
