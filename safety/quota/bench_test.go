package quota

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/warden-llm/warden/internal/proc"
)

// BenchmarkAdmitSettle measures one request's quota path. "memory" is
// Admit, Status and the in-memory part of Settle (what the request waits
// for apart from the SQLite write); "durable" is the whole Settle, waiting
// for its commit, one request at a time; "durable-parallel" shows the
// commits shared by concurrent requests.
func BenchmarkAdmitSettle(b *testing.B) {
	lim := Limits{RPM: 1e9, TPM: 1e12, TokensPerDay: 1e15, TokensPerMonth: 1e16, Concurrency: 1e6}
	ctx := context.Background()

	b.Run("memory", func(b *testing.B) {
		l, _ := newLimiter(b, newClock(start))
		admit(b, l, "k", lim, 1, 1, true).Fail(ctx)
		b.ReportAllocs()
		for b.Loop() {
			r, err := l.Admit(ctx, "k", lim, 200, 512, false)
			if err != nil {
				b.Fatal(err)
			}
			l.Status("k", lim)
			if r.done.CompareAndSwap(false, true) {
				r.release(300)
			}
		}
	})
	// "server" is the server's path: Count, AdmitUser, Status, and a
	// Settle that does not wait for its commit (the server's settleCtx is
	// done); cpu-µs/op includes the writer goroutine's commits, which run
	// as requests trickle in, one each.
	b.Run("server", func(b *testing.B) {
		l, db := newLimiter(b, newClock(start))
		userLim := Limits{RPM: 1e9, TPM: 1e12, TokensPerDay: 1e15, Concurrency: 1e6}
		done, cancel := context.WithCancel(ctx)
		cancel()
		before := db.Queries()
		b.ReportAllocs()
		cpu0 := proc.CPUTime()
		for b.Loop() {
			if err := l.CountUser("k", "alice", userLim); err != nil {
				b.Fatal(err)
			}
			if err := l.Count("k", lim); err != nil {
				b.Fatal(err)
			}
			r, err := l.AdmitUser(ctx, "k", lim, "alice", userLim, 200, 512, false)
			if err != nil {
				b.Fatal(err)
			}
			l.Status("k", lim)
			if err := r.Settle(done, 100, 200); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if err := l.Close(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((proc.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64(db.Queries()-before)/float64(b.N), "stmts/op")
	})
	// "server-parallel" is "server" from concurrent requests of 4 keys,
	// each with 2 end users: what the Limiter's locks cost under load.
	b.Run("server-parallel", func(b *testing.B) {
		l, _ := newLimiter(b, newClock(start))
		userLim := Limits{RPM: 1e9, TPM: 1e12, TokensPerDay: 1e15, Concurrency: 1e6}
		done, cancel := context.WithCancel(ctx)
		cancel()
		var id atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := id.Add(1)
			key, user := fmt.Sprint("k", n%4), fmt.Sprint("u", n%8)
			for pb.Next() {
				if err := l.CountUser(key, user, userLim); err != nil {
					b.Error(err)
					return
				}
				if err := l.Count(key, lim); err != nil {
					b.Error(err)
					return
				}
				r, err := l.AdmitUser(ctx, key, lim, user, userLim, 200, 512, false)
				if err != nil {
					b.Error(err)
					return
				}
				l.Status(key, lim)
				if err := r.Settle(done, 100, 200); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("durable", func(b *testing.B) {
		l, db := newLimiter(b, newClock(start))
		admit(b, l, "k", lim, 1, 1, true).Fail(ctx)
		before := db.Queries()
		b.ReportAllocs()
		cpu0 := proc.CPUTime()
		for b.Loop() {
			r, err := l.Admit(ctx, "k", lim, 200, 512, false)
			if err != nil {
				b.Fatal(err)
			}
			l.Status("k", lim)
			if err := r.Settle(ctx, 100, 200); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((proc.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		b.ReportMetric(float64(db.Queries()-before)/float64(b.N), "stmts/op")
	})
	b.Run("durable-parallel", func(b *testing.B) {
		l, db := newLimiter(b, newClock(start))
		var id atomic.Int64
		before := db.Queries()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			key := fmt.Sprint("k", id.Add(1)%4)
			for pb.Next() {
				r, err := l.Admit(ctx, key, lim, 200, 512, false)
				if err != nil {
					b.Error(err)
					return
				}
				l.Status(key, lim)
				if err := r.Settle(ctx, 100, 200); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(db.Queries()-before)/float64(b.N), "stmts/op")
	})
}
