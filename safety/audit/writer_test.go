package audit

import (
	"context"
	"database/sql"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/warden-llm/warden/safety/store"
	"github.com/warden-llm/warden/safety/store/storetest"
)

func TestAppendTxChains(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	ctx := t.Context()
	for round := range 3 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		seqs, err := AppendTx(ctx, tx, req(1), Record{Kind: KindAdmin, KeyID: "k1", Detail: []byte(`{"action":"key.create"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if want := []int64{int64(2*round + 1), int64(2*round + 2)}; seqs[0] != want[0] || seqs[1] != want[1] {
			t.Errorf("round %d: seqs %v, want %v", round, seqs, want)
		}
	}
	recs, err := Query(ctx, db, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 6 {
		t.Fatalf("got %d records, want 6", len(recs))
	}
	var prev Hash
	for _, r := range recs {
		if r.PrevHash != prev {
			t.Errorf("seq %d: prev_hash %s, want %s", r.Seq, r.PrevHash, prev)
		}
		prev = r.Hash
	}
	if string(recs[1].Detail) != `{"action":"key.create"}` || recs[0].RequestID != "req-1" {
		t.Errorf("round trip lost fields: %+v", recs[:2])
	}
	rep := mustVerify(t, db, dir, nil)
	if rep.Records != 6 || rep.From != 1 || rep.To != 6 {
		t.Errorf("report %+v, want 6 records 1..6", rep)
	}

	tx, _ := db.BeginTx(ctx, nil)
	defer tx.Rollback()
	if _, err := AppendTx(ctx, tx, Record{Kind: "bogus"}); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := AppendTx(ctx, tx, Record{Kind: KindConfig, Detail: []byte("{")}); err == nil {
		t.Error("invalid detail JSON accepted")
	}
}

func TestGroupCommitUnderLoad(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	var hooked sync.Map
	w := startWriter(t, db, dir, Config{
		CheckpointEvery: 1000,
		OnCommit: func(tx *sql.Tx, recs []StoredRecord) error {
			for _, r := range recs {
				hooked.Store(r.Seq, true)
			}
			return nil
		},
	})
	const goroutines, each = 64, 50
	var mu sync.Mutex
	var seqs []int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				seq, err := w.Append(t.Context(), req(g*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seqs = append(seqs, seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := w.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	t.Logf("stats %+v", st)
	if st.Records != goroutines*each {
		t.Errorf("records %d, want %d", st.Records, goroutines*each)
	}
	if st.Commits >= st.Records {
		t.Errorf("commits %d not fewer than records %d: no group commit", st.Commits, st.Records)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seq #%d is %d: not contiguous", i, s)
		}
		if _, ok := hooked.Load(s); !ok {
			t.Fatalf("OnCommit never saw seq %d", s)
		}
	}
	rep := mustVerify(t, db, dir, nil)
	if rep.Records != goroutines*each || rep.Checkpoints < 3 {
		t.Errorf("report %+v: want %d records and ≥ 3 checkpoints", rep, goroutines*each)
	}
	if _, err := w.Append(t.Context(), req(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v, want ErrClosed", err)
	}
}

func TestFailsClosedOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	ctx := t.Context()
	if _, err := w.Append(ctx, req(0)); err != nil {
		t.Fatal(err)
	}
	var pages int64
	if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	w.SetMaxPageCount(pages + 2)
	big := req(1)
	big.Detail = []byte(`{"pad":"` + pad(3000) + `"}`)
	var err error
	var ok int
	for i := 0; i < 100 && err == nil; i++ {
		_, err = w.Append(ctx, big)
		if err == nil {
			ok++
		}
	}
	if err == nil {
		t.Fatal("database never filled up")
	}
	if !errors.Is(err, ErrNotCommitted) {
		t.Errorf("error %v is not ErrNotCommitted", err)
	}
	t.Logf("full after %d appends: %v", ok, err)
	n := count(t, db, "audit_records")
	if _, err := w.Append(ctx, big); err == nil {
		t.Fatal("second append on a full disk succeeded")
	}
	if got := count(t, db, "audit_records"); got != n {
		t.Errorf("failed appends left rows: %d, then %d", n, got)
	}
	if got := int64(1 + ok); got != n {
		t.Errorf("rows %d, want %d committed", n, got)
	}
	mustVerify(t, db, dir, nil)

	w.SetMaxPageCount(1 << 30)
	seq, err := w.Append(ctx, big)
	if err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	if seq != n+1 {
		t.Errorf("seq %d after recovery, want %d", seq, n+1)
	}
	mustVerify(t, db, dir, nil)
	if st := w.Stats(); st.Failures < 2 {
		t.Errorf("stats %+v: want ≥ 2 failures", st)
	}
}

func pad(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

func TestHookErrorFailsBatch(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	fail := true
	w := startWriter(t, db, dir, Config{OnCommit: func(*sql.Tx, []StoredRecord) error {
		if fail {
			return errors.New("outbox full")
		}
		return nil
	}})
	if _, err := w.Append(t.Context(), req(0)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("append with failing hook: %v, want ErrNotCommitted", err)
	}
	if n := count(t, db, "audit_records"); n != 0 {
		t.Errorf("%d rows after a failed hook, want 0", n)
	}
	fail = false
	if seq, err := w.Append(t.Context(), req(0)); err != nil || seq != 1 {
		t.Errorf("append after hook recovers: %d, %v", seq, err)
	}
}

// TestTwoProcessesDoNotFork appends through a Writer and, at the same time,
// through AppendTx on a second handle to the same file (as the CLI does).
func TestTwoProcessesDoNotFork(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	other, err := store.Open(t.Context(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w := startWriter(t, db, dir, Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := w.Append(context.Background(), req(g*50+i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tx, err := other.BeginTx(context.Background(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := AppendTx(context.Background(), tx, Record{Kind: KindAdmin, Detail: []byte(`{}`)}); err != nil {
				tx.Rollback()
				t.Error(err)
				return
			}
			if err := tx.Commit(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	w.Close(t.Context())
	rep := mustVerify(t, db, dir, nil)
	if rep.Records != 450 {
		t.Errorf("%d records, want 450", rep.Records)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	if err := NewWriter(db, Config{DataDir: dir, StoreText: "everything"}).Start(t.Context()); err == nil {
		t.Error("unknown store_text accepted")
	}
	w := NewWriter(db, Config{DataDir: dir})
	if _, err := w.Append(t.Context(), req(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("append before start: %v, want ErrClosed", err)
	}
	if _, err := w.Append(t.Context(), Record{Kind: "nope"}); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("bad record: %v, want a validation error", err)
	}
}

// TestWriterLinksToOtherWriters: the Writer links to the head it last
// committed without reading it, and still to the head another process left
// when one appended in between (a record, a gap record after a pruning or
// a prune), so the chain never forks.
func TestWriterLinksToOtherWriters(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	other := storetest.OpenDir(t, dir) // the CLI, another process
	w := startWriter(t, db, dir, Config{})
	appendW := func(i int) int64 {
		t.Helper()
		seq, err := w.Append(ctx, req(i))
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	inOther := func(fn func(tx *sql.Tx) (int64, error)) int64 {
		t.Helper()
		var seq int64
		if err := other.InTx(ctx, func(tx *sql.Tx) (err error) { seq, err = fn(tx); return err }); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	appendW(0)
	before := db.Queries()
	appendW(1)
	if n := db.Queries() - before; n != 3 {
		t.Errorf("an append after the Writer's own ran %d statements, want 3 (BEGIN, INSERT, COMMIT): no head read", n)
	}
	s := inOther(func(tx *sql.Tx) (int64, error) {
		seqs, err := AppendTx(ctx, tx, Record{Kind: KindAdmin, Detail: []byte(`{}`)})
		return seqs[len(seqs)-1], err
	})
	if got := appendW(2); got != s+1 {
		t.Fatalf("after another process's record at %d the Writer appended at %d, want %d", s, got, s+1)
	}
	gap := inOther(func(tx *sql.Tx) (int64, error) {
		return AppendGapTx(ctx, tx, GapDetail{SeenSeq: s + 100, Actor: "os:t"}, storetest.T0)
	})
	if got := appendW(3); got != gap+1 {
		t.Fatalf("after another process's gap record at %d the Writer appended at %d, want %d", gap, got, gap+1)
	}
	if _, err := Prune(ctx, other, storetest.T0.Add(100*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	appendW(4)
	mustVerify(t, db, dir, nil)
}
