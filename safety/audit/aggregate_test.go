package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/warden-llm/warden/safety/store/storetest"
)

// recorder is a fake Appender.
type recorder struct {
	mu   sync.Mutex
	recs []Record
	err  error
}

func (r *recorder) Append(_ context.Context, rec Record) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return 0, r.err
	}
	r.recs = append(r.recs, rec)
	return int64(len(r.recs)), nil
}

func (r *recorder) snapshot() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...)
}

// TestAggregatorOneRecordPerIPAndMinute runs in a synctest bubble: its
// ticks are the bubble's fake time, so "nothing was flushed after many
// ticks" is proven, not hoped for.
func TestAggregatorOneRecordPerIPAndMinute(t *testing.T) {
	synctest.Test(t, testAggregatorOneRecordPerIPAndMinute)
}

func testAggregatorOneRecordPerIPAndMinute(t *testing.T) {
	clock := newClock()
	rec := &recorder{}
	a := NewAggregator(rec)
	a.Now, a.Tick, a.MaxIPs = clock.Now, time.Millisecond, 3
	a.Start()
	for i := range 10000 {
		a.Refused(fmt.Sprintf("198.51.100.%d", i%2))
	}
	a.Refused("203.0.113.9")
	a.Refused("203.0.113.10") // beyond MaxIPs
	a.Refused("203.0.113.11")
	time.Sleep(20 * a.Tick) // twenty ticks, each handled before Wait returns
	synctest.Wait()
	if n := len(rec.snapshot()); n != 0 {
		t.Fatalf("%d records flushed before the minute ended", n)
	}
	clock.Advance(time.Minute)
	a.Refused("198.51.100.0") // next minute: flushed by Close
	time.Sleep(a.Tick)        // the next tick flushes the ended minute
	synctest.Wait()
	got := rec.snapshot()
	want := map[string]int64{"198.51.100.0": 5000, "198.51.100.1": 5000, "203.0.113.9": 1, OtherIPs: 2}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for _, r := range got {
		var d struct{ Count int64 }
		json.Unmarshal(r.Detail, &d)
		if r.Kind != KindAuthRefused || d.Count != want[r.ClientIP] || !r.Time.Equal(newClock().Now()) {
			t.Errorf("record %+v (%s), want count %d at the minute's start", r, r.Detail, want[r.ClientIP])
		}
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := rec.snapshot(); len(got) != 5 || got[4].ClientIP != "198.51.100.0" {
		t.Errorf("Close did not flush the current minute: %+v", got)
	}
}

func TestAggregatorKeepsCountsWhenAppendFails(t *testing.T) {
	rec := &recorder{err: ErrNotCommitted}
	a := NewAggregator(rec)
	a.Refused("192.0.2.1")
	a.Refused("192.0.2.1")
	if err := a.Close(t.Context()); err == nil {
		t.Fatal("Close hid a failed append")
	}
	rec.err = nil
	if err := a.flush(t.Context(), 1<<62); err != nil {
		t.Fatal(err)
	}
	if got := rec.snapshot(); len(got) != 1 || string(got[0].Detail) != `{"count":2,"window_seconds":60}` {
		t.Errorf("retried records: %+v", got)
	}
}

func TestAggregatorThroughWriter(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	a := NewAggregator(w)
	a.Start()
	for range 1000 {
		a.Refused("192.0.2.1")
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "audit_records"); n != 1 {
		t.Errorf("%d records for one IP's minute, want 1", n)
	}
	mustVerify(t, db, dir, nil)
}

// TestAggregatorRequestRefusedPerKeyAndMinute: a key's refused requests
// become one record per minute with the count by status, through a real
// writer whose chain still verifies.
func TestAggregatorRequestRefusedPerKeyAndMinute(t *testing.T) {
	dir := t.TempDir()
	db := storetest.OpenDir(t, dir)
	w := startWriter(t, db, dir, Config{})
	clock := newClock()
	a := NewAggregator(w)
	a.Now = clock.Now
	for i := range 1000 {
		a.RequestRefused("k1", "192.0.2.1", []int{429, 429, 400, 404}[i%4])
	}
	a.RequestRefused("k2", "192.0.2.2", 403)
	clock.Advance(time.Minute)
	a.RequestRefused("k1", "192.0.2.1", 429)
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "audit_records"); n != 3 {
		t.Errorf("%d records for two keys' first minute and one key's second, want 3", n)
	}
	mustVerify(t, db, dir, nil)

	rec := &recorder{}
	a = NewAggregator(rec)
	for i := range 10 {
		a.RequestRefused("k1", "192.0.2.1", []int{429, 400}[i%5/4])
	}
	if err := a.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.snapshot()
	if len(got) != 1 {
		t.Fatalf("records %+v", got)
	}
	r := got[0]
	if r.Kind != KindRequestRefused || r.KeyID != "k1" || r.ClientIP != "192.0.2.1" || r.Status != 429 ||
		string(r.Detail) != `{"count":10,"window_seconds":60,"statuses":{"400":2,"429":8}}` {
		t.Errorf("record %+v detail %s", r, r.Detail)
	}
}
