// Package testlog holds a log destination for tests whose code under test
// logs from its own goroutines.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it; writes and reads may come from
// any goroutine.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
