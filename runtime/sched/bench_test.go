package sched

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

func BenchmarkAcquireRelease(b *testing.B) {
	s := New(Config{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		release, _, err := s.Acquire(ctx, "m", "k", 100)
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	s := New(Config{Slots: func(string) int { return 4 }, MaxQueue: -1, MaxQueuePerKey: -1})
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := fmt.Sprint("k", n.Add(1)%4)
		for pb.Next() {
			release, _, err := s.Acquire(ctx, "m", key, 100)
			if err != nil {
				b.Error(err)
				return
			}
			release()
		}
	})
}
