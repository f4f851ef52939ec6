package server

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gin-gonic/gin"
	"github.com/ollama/ollama/api"
)

// maxEmbeddingInputs is OpenAI's limit on inputs per request.
const maxEmbeddingInputs = 2048

type embeddingRequest struct {
	Model          string `json:"model"`
	Input          any    `json:"input"`
	Dimensions     *int   `json:"dimensions"`
	EncodingFormat string `json:"encoding_format"`
	User           string `json:"user"`

	in []string // the inputs as strings, once checked
}

func (r *embeddingRequest) modelName() string { return r.Model }

func (r *embeddingRequest) bodyUser() string { return r.User }

func (r *embeddingRequest) check() (err error) {
	r.in, err = r.inputs()
	return err
}

// inputs validates the request and returns its inputs as strings.
func (r *embeddingRequest) inputs() ([]string, error) {
	if r.Model == "" {
		return nil, missing("model")
	}
	switch r.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, invalidf("encoding_format", "Invalid value for 'encoding_format': '%s'. Supported values are: 'float' and 'base64'.", r.EncodingFormat)
	}
	if r.Dimensions != nil && *r.Dimensions < 1 {
		return nil, invalidf("dimensions", "Invalid 'dimensions': expected a value >= 1, got %d.", *r.Dimensions)
	}
	var in []string
	switch v := r.Input.(type) {
	case nil:
		return nil, missing("input")
	case string:
		in = []string{v}
	case []any:
		if len(v) == 0 {
			return nil, invalidf("input", "Invalid 'input': the array is empty.")
		}
		if len(v) > maxEmbeddingInputs {
			return nil, invalidf("input", "Invalid 'input': at most %d inputs per request, got %d.", maxEmbeddingInputs, len(v))
		}
		in = make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, invalidf("input", "Invalid 'input[%d]': expected a string (token arrays are not supported).", i)
			}
			in[i] = s
		}
	default:
		return nil, invalidf("input", "Invalid type for 'input': expected a string or an array of strings.")
	}
	for i, s := range in {
		if s == "" {
			return nil, invalidf("input", "Invalid 'input[%d]': the input is empty.", i)
		}
	}
	return in, nil
}

type embedding struct {
	Object    string `json:"object"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
	Index     int    `json:"index"`
}

type embeddingList struct {
	Object string      `json:"object"`
	Data   []embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func (s *Server) embeddings(c *gin.Context) error {
	var req embeddingRequest
	return s.pipeline(c, &req, func(p *pipe) error {
		inputs := req.in
		if err := p.filterTexts("input", inputs); err != nil {
			return err
		}
		if err := p.admit(estimateText(inputs...), nil, true); err != nil {
			return err
		}
		no := false
		areq := &api.EmbedRequest{Model: p.model.Name, Input: inputs, Truncate: &no}
		if req.Dimensions != nil {
			// Ollama would silently cap dimensions at the model's width.
			width, err := s.models.embeddingWidth(p.ctx, p.model)
			if err != nil {
				return err
			}
			if *req.Dimensions > width {
				return invalidf("dimensions", "Invalid 'dimensions': %d exceeds the model's embedding width of %d.", *req.Dimensions, width)
			}
			areq.Dimensions = *req.Dimensions
		}
		resp, err := p.embed(areq)
		if err != nil {
			return err
		}
		if len(resp.Embeddings) != len(inputs) {
			return fmt.Errorf("embed: backend returned %d embeddings for %d inputs", len(resp.Embeddings), len(inputs))
		}
		out := embeddingList{Object: "list", Model: req.Model, Data: make([]embedding, len(resp.Embeddings))}
		for i, e := range resp.Embeddings {
			var v any = e
			if req.EncodingFormat == "base64" {
				v = floatsBase64(e)
			}
			out.Data[i] = embedding{Object: "embedding", Embedding: v, Index: i}
		}
		out.Usage.PromptTokens = resp.PromptEvalCount
		out.Usage.TotalTokens = resp.PromptEvalCount
		return s.respond(c, &out, outcome{usage: usage{PromptTokens: resp.PromptEvalCount, TotalTokens: resp.PromptEvalCount}})
	})
}

// floatsBase64 encodes floats as OpenAI does: little-endian float32, base64.
func floatsBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}
