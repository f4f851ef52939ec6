package server

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/ollama/ollama/anthropic"
)

// contentChunk frames the chat stream's most common event, a delta of
// text alone, without reflection: the chunk's fields but the text are the
// same for the whole stream, so they are encoded once (prefix, suffix)
// and each event only appends the text as a JSON string. The bytes are
// those json.Marshal makes of the chatChunk (TestContentChunkAsMarshal).
type contentChunk struct {
	buf    []byte // the prefix, then the last event's text and suffix
	prefix int    // the prefix's length; 0: not made yet
}

const contentChunkSuffix = `},"logprobs":null,"finish_reason":null}]}`

// event returns the chunk of c delivering text; valid until the next call.
func (cc *contentChunk) event(c *chatChunk, text string) []byte {
	if cc.prefix == 0 {
		p := make([]byte, 0, 192+len(c.ID)+len(c.Model))
		p = append(p, `{"id":`...)
		p = appendJSONString(p, c.ID)
		p = append(p, `,"object":`...)
		p = appendJSONString(p, c.Object)
		p = append(p, `,"created":`...)
		p = strconv.AppendInt(p, c.Created, 10)
		p = append(p, `,"model":`...)
		p = appendJSONString(p, c.Model)
		p = append(p, `,"system_fingerprint":`...)
		p = appendJSONString(p, c.SystemFingerprint)
		p = append(p, `,"choices":[{"index":0,"delta":{"content":`...)
		cc.buf, cc.prefix = p, len(p)
	}
	b := appendJSONString(cc.buf[:cc.prefix], text)
	cc.buf = append(b, contentChunkSuffix...)
	return cc.buf
}

// appendJSONFloat appends a finite f as encoding/json writes a float64.
func appendJSONFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' { // e-07 → e-7, as encoding/json
		if n := len(dst); dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string (with its
// default HTML escaping): invalid UTF-8 becomes \ufffd, U+2028 and U+2029
// are escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONValue appends v as json.Marshal writes it, without reflection
// for the values of a map[string]any event (OpenAI's Responses stream
// converter makes its events so): maps with sorted keys, []any, strings,
// ints, floats, bools, nil and pointers to ints and bools; and Anthropic's content block deltas. Any other
// value is json.Marshal's.
func appendJSONValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendJSONString(dst, v), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case float64:
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			return appendJSONFloat(dst, v), nil
		}
	case *int:
		if v == nil {
			return append(dst, "null"...), nil
		}
		return strconv.AppendInt(dst, int64(*v), 10), nil
	case *bool:
		if v == nil {
			return append(dst, "null"...), nil
		}
		return strconv.AppendBool(dst, *v), nil
	case map[string]any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		var small [16]string
		keys := small[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendJSONValue(dst, v[k]); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case anthropic.ContentBlockDeltaEvent: // most of a Messages stream
		dst = append(dst, `{"type":`...)
		dst = appendJSONString(dst, v.Type)
		dst = append(dst, `,"index":`...)
		dst = strconv.AppendInt(dst, int64(v.Index), 10)
		dst = append(dst, `,"delta":{"type":`...)
		dst = appendJSONString(dst, v.Delta.Type)
		for _, f := range [...]struct{ name, value string }{
			{`,"text":`, v.Delta.Text}, {`,"partial_json":`, v.Delta.PartialJSON},
			{`,"thinking":`, v.Delta.Thinking}, {`,"signature":`, v.Delta.Signature},
		} {
			if f.value != "" { // omitempty
				dst = append(dst, f.name...)
				dst = appendJSONString(dst, f.value)
			}
		}
		return append(dst, "}}"...), nil
	case []any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendJSONValue(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

// appendAnswer appends a whole JSON answer as json.Marshal writes it,
// without reflection for the common chat completion (one choice of text,
// no tool calls); ok false: the caller marshals it.
func appendAnswer(dst []byte, v any) (_ []byte, ok bool) {
	c, isChat := v.(chatCompletion)
	if !isChat || len(c.Choices) != 1 {
		return dst, false
	}
	ch := &c.Choices[0]
	if ch.Logprobs != nil || ch.Message.Refusal != nil || len(ch.Message.ToolCalls) > 0 {
		return dst, false
	}
	if dst == nil { // one allocation, unless the text needs escaping
		n := 320 + len(c.ID) + len(c.Model) + len(c.SystemFingerprint)
		if ch.Message.Content != nil {
			n += len(*ch.Message.Content)
		}
		dst = make([]byte, 0, n)
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, c.ID)
	dst = append(dst, `,"object":`...)
	dst = appendJSONString(dst, c.Object)
	dst = append(dst, `,"created":`...)
	dst = strconv.AppendInt(dst, c.Created, 10)
	dst = append(dst, `,"model":`...)
	dst = appendJSONString(dst, c.Model)
	dst = append(dst, `,"system_fingerprint":`...)
	dst = appendJSONString(dst, c.SystemFingerprint)
	dst = append(dst, `,"choices":[{"index":`...)
	dst = strconv.AppendInt(dst, int64(ch.Index), 10)
	dst = append(dst, `,"message":{"role":`...)
	dst = appendJSONString(dst, ch.Message.Role)
	dst = append(dst, `,"content":`...)
	if ch.Message.Content == nil {
		dst = append(dst, "null"...)
	} else {
		dst = appendJSONString(dst, *ch.Message.Content)
	}
	dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":`...)
	dst = appendJSONString(dst, ch.FinishReason)
	dst = append(dst, `}],"usage":{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.Usage.PromptTokens), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.Usage.CompletionTokens), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.Usage.TotalTokens), 10)
	return append(dst, "}}"...), true
}
