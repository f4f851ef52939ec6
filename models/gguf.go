package models

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrNotGGUF is the error of a file that is not a GGUF model file.
var ErrNotGGUF = errors.New("not a GGUF file")

// ggufHeaderLen is magic, version, tensor count and metadata count.
const ggufHeaderLen = 4 + 4 + 8 + 8

// maxGGUFCount bounds the tensor and metadata counts a header may claim:
// far above any real model, far below what would make a reader allocate
// without bound.
const maxGGUFCount = 1 << 24

// CheckGGUF reads a GGUF header from r: the magic "GGUF", a version Ollama
// v0.17.4 reads (2 or 3), and tensor and metadata counts a model can have.
// It returns the version, or an error wrapping ErrNotGGUF that says what is
// wrong.
func CheckGGUF(r io.Reader) (uint32, error) {
	var h [ggufHeaderLen]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: %d bytes, shorter than a GGUF header", ErrNotGGUF, n)
		}
		return 0, fmt.Errorf("read GGUF header: %w", err)
	}
	if string(h[:4]) != "GGUF" {
		return 0, fmt.Errorf("%w: magic %q, want \"GGUF\"", ErrNotGGUF, h[:4])
	}
	v := binary.LittleEndian.Uint32(h[4:8])
	if v != 2 && v != 3 {
		return 0, fmt.Errorf("%w: GGUF version %d, want 2 or 3", ErrNotGGUF, v)
	}
	tensors := binary.LittleEndian.Uint64(h[8:16])
	kvs := binary.LittleEndian.Uint64(h[16:24])
	if tensors == 0 || tensors > maxGGUFCount {
		return 0, fmt.Errorf("%w: header claims %d tensors", ErrNotGGUF, tensors)
	}
	if kvs > maxGGUFCount {
		return 0, fmt.Errorf("%w: header claims %d metadata entries", ErrNotGGUF, kvs)
	}
	return v, nil
}
