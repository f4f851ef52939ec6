package audit

import (
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestQueryFilters(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	clock := newClock()
	w := startWriter(t, db, dir, Config{Now: clock.Now})
	t0 := clock.Now()
	for i := range 10 {
		r := req(i)
		if i%2 == 1 {
			r.KeyID = "k2"
		}
		if _, err := w.Append(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	tests := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"key", Filter{KeyID: "k2"}, []int64{2, 4, 6, 8, 10}},
		{"window", Filter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, []int64{3, 4, 5}},
		{"after and limit", Filter{AfterSeq: 6, Limit: 2}, []int64{7, 8}},
		{"key after", Filter{KeyID: "k2", AfterSeq: 6}, []int64{8, 10}},
		{"newest", Filter{Limit: 3, Newest: true}, []int64{8, 9, 10}},
		{"newest of a key", Filter{KeyID: "k2", Limit: 2, Newest: true}, []int64{8, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Query(t.Context(), db, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, r := range got {
				seqs = append(seqs, r.Seq)
			}
			if len(seqs) != len(tc.want) {
				t.Fatalf("got %v, want %v", seqs, tc.want)
			}
			for i := range seqs {
				if seqs[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", seqs, tc.want)
				}
			}
		})
	}
	w.Close(t.Context())
	head, _, err := readHead(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := loadCheckpoints(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if head != 10 || count(t, db, "audit_records") != 10 || len(cps) == 0 || cps[len(cps)-1].Seq != 10 {
		t.Fatalf("head %d, %d records, checkpoints %+v; want head 10 and a closing checkpoint at 10", head, count(t, db, "audit_records"), cps)
	}
	// The checkpoint's JSON form round-trips and still verifies.
	b, _ := json.Marshal(cps[len(cps)-1])
	c, err := ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignature(c.PublicKey); err != nil {
		t.Errorf("round-tripped checkpoint %s: %v", b, err)
	}
}

// TestCheckpointEveryInterval runs in a synctest bubble: the writer's
// interval ticks on the bubble's fake time, so five idle ticks happen for
// sure before the test checks that they added nothing.
func TestCheckpointEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Millisecond
		dir := t.TempDir()
		db := storetest.OpenDir(t, dir)
		w := startWriter(t, db, dir, Config{CheckpointInterval: interval})
		if _, err := w.Append(t.Context(), req(0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(interval)
		synctest.Wait()
		if n := w.Stats().Checkpoints; n != 1 {
			t.Fatalf("%d checkpoints after one record and one interval, want 1", n)
		}
		time.Sleep(5 * interval) // idle ticks add nothing
		synctest.Wait()
		if n := w.Stats().Checkpoints; n != 1 {
			t.Errorf("%d checkpoints after one record and idle ticks, want 1", n)
		}
		mustVerify(t, db, dir, nil)
	})
}
