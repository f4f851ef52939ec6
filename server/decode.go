package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// decodeJSON reads a request body of at most the configured size and decodes
// it into v. The content type is not checked: a body that is valid JSON is
// accepted whatever the client called it (curl's default form type too).
// Invalid UTF-8 is refused explicitly because encoding/json would silently
// replace it.
func decodeJSON(r io.Reader, v any) error {
	buf := bodyBufs.Get().(*[]byte)
	body, err := readAll(r, (*buf)[:0])
	defer func() {
		if cap(body) <= maxPooledBody {
			*buf = body[:0]
			bodyBufs.Put(buf)
		}
	}()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(mbe.Limit)
		}
		return fmt.Errorf("read body: %w", err)
	}
	return unmarshalBody(body, v)
}

// bodyBufs holds the buffers request bodies are read into: nothing keeps
// a body once it is decoded (the decoder reads from a copy of its own),
// so a request reads into a buffer a request before it grew.
var bodyBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest body buffer kept for reuse.
const maxPooledBody = 1 << 20

// readAll is io.ReadAll into b's capacity, growing it as needed.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	if cap(b) < 512 {
		b = make([]byte, 0, 512)
	}
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // let append pick the growth
		}
	}
}

// unmarshalBody is decodeJSON after the read; the fuzz target calls it.
func unmarshalBody(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "The request body is empty; expected a JSON object."}
	}
	if !utf8.Valid(body) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "The request body is not valid UTF-8."}
	}
	// json.Unmarshal reads the body where it lies (a json.Decoder would
	// copy it into a buffer of its own). Its errors are mapped to those a
	// Decoder reading one value, then io.EOF, gives: the tests hold the
	// two to the same answers (TestUnmarshalBodyAsDecoder).
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		switch {
		case strings.HasSuffix(syn.Error(), " after top-level value"):
			// Data after the first value. Its own errors come first:
			// decode it alone (Unmarshal checks the whole body before
			// decoding anything, so nothing was decoded yet).
			if err := json.Unmarshal(body[:syn.Offset-1], v); err != nil {
				return jsonError(err)
			}
			return errTrailingData
		case syn.Error() == "unexpected end of JSON input", endedInValue(body, syn):
			return jsonError(io.ErrUnexpectedEOF)
		}
	}
	return jsonError(err)
}

// endedInValue reports whether syn is json.Unmarshal's error for a body
// that ends inside a literal or a number ("tru", "1e"): at the end it
// steps a space, which such a value cannot take. A json.Decoder calls
// that the end of input. A real space there (the body's last byte) is
// an error of the body for both.
func endedInValue(body []byte, syn *json.SyntaxError) bool {
	return syn.Offset == int64(len(body)) && body[len(body)-1] != ' ' &&
		strings.HasPrefix(syn.Error(), "invalid character ' ' ")
}

var errTrailingData = &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "Malformed JSON: unexpected data after the top-level value."}

func jsonError(err error) *apiError {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest,
			Message: fmt.Sprintf("Malformed JSON at byte %d: %s.", syn.Offset, syn.Error())}
	case errors.As(err, &typ):
		if typ.Field == "" {
			return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest,
				Message: fmt.Sprintf("Invalid request: expected a JSON object, got %s.", typ.Value)}
		}
		field := wireField(typ.Field)
		return invalidf(field, "Invalid type for '%s': expected %s, got %s.", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "Malformed JSON: unexpected end of input."}
	}
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Message: "Malformed JSON: " + err.Error()}
}

// wireField drops the Go names of embedded structs from a decoder field
// path ("ChatCompletionRequest.temperature" → "temperature"): the client
// knows only the JSON names, which are all lower case.
func wireField(path string) string {
	parts := strings.Split(path, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "" && unicode.IsUpper(rune(p[0])) {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, ".")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "float64", "float32":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return goKind
}
