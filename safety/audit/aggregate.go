package audit

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Appender is what the Aggregator needs from a Writer.
type Appender interface {
	Append(ctx context.Context, rec Record) (int64, error)
}

var _ Appender = (*Writer)(nil)

// OtherIPs is the client IP of the aggregate that collects refusals from
// addresses beyond Aggregator.MaxIPs in one minute.
const OtherIPs = "*"

// Aggregator counts requests refused before authentication per client IP
// and minute, in memory, and appends one auth_refused record per (IP,
// minute) once the minute is over, so a flood of bad keys costs at most
// MaxIPs+1 records a minute. Requests of a valid key that were answered
// with a 4xx before reaching the model (invalid, blocked, over quota) are
// counted the same way per key and minute: one request_refused record each,
// with the count by status.
type Aggregator struct {
	// Now is the clock (nil = time.Now).
	Now func() time.Time
	// Tick is how often ended minutes are flushed (default 1s).
	Tick time.Duration
	// MaxIPs caps the distinct IPs counted per minute (default 10000); the
	// rest are counted under OtherIPs.
	MaxIPs int
	// OnError learns of a failed flush; the counts are kept and retried.
	OnError func(error)

	app Appender

	mu     sync.Mutex
	counts map[aggKey]*aggCount
	perMin map[int64]int // distinct IPs per minute (auth refusals)
	stop   chan struct{}
	done   chan struct{}
}

type aggKey struct {
	minute int64 // unix minute
	kind   Kind
	who    string // the client IP (auth_refused) or the key id (request_refused)
}

type aggCount struct {
	n        int64
	ip       string          // request_refused: the first client IP seen
	statuses map[int64]int64 // request_refused: count by HTTP status
}

// NewAggregator returns an Aggregator appending through app; Start it.
func NewAggregator(app Appender) *Aggregator {
	return &Aggregator{app: app, counts: map[aggKey]*aggCount{}, perMin: map[int64]int{}}
}

func (a *Aggregator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Start starts the flushing goroutine; Close stops it.
// Refusals counted after Close are not flushed.
func (a *Aggregator) Start() {
	tick := a.Tick
	if tick <= 0 {
		tick = time.Second
	}
	a.stop = make(chan struct{})
	a.done = make(chan struct{})
	go a.run(tick)
}

// Refused counts one refused request from ip.
func (a *Aggregator) Refused(ip string) {
	m := a.now().Unix() / 60
	a.mu.Lock()
	defer a.mu.Unlock()
	k := aggKey{m, KindAuthRefused, ip}
	if _, ok := a.counts[k]; !ok {
		max := a.MaxIPs
		if max <= 0 {
			max = 10000
		}
		if a.perMin[m] >= max {
			k.who = OtherIPs
		} else {
			a.perMin[m]++
		}
	}
	a.count(k).n++
}

// RequestRefused counts one request of keyID, from ip, answered with
// status before it reached the model. Keys are few (they exist in the
// database), so they are not capped like IPs.
func (a *Aggregator) RequestRefused(keyID, ip string, status int) {
	m := a.now().Unix() / 60
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.count(aggKey{m, KindRequestRefused, keyID})
	if c.ip == "" {
		c.ip = ip
	}
	c.n++
	c.statuses[int64(status)]++
}

// count returns k's counter, made if new; a.mu is held.
func (a *Aggregator) count(k aggKey) *aggCount {
	c := a.counts[k]
	if c == nil {
		c = &aggCount{statuses: map[int64]int64{}}
		a.counts[k] = c
	}
	return c
}

// add merges c into k's counter (a failed flush); a.mu is held.
func (a *Aggregator) add(k aggKey, c *aggCount) {
	cur := a.count(k)
	cur.n += c.n
	if cur.ip == "" {
		cur.ip = c.ip
	}
	for st, n := range c.statuses {
		cur.statuses[st] += n
	}
}

func (a *Aggregator) run(tick time.Duration) {
	defer close(a.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.flush(context.Background(), a.now().Unix()/60)
		case <-a.stop:
			return
		}
	}
}

// flush appends the counts of minutes before cur; failed ones are kept.
func (a *Aggregator) flush(ctx context.Context, cur int64) error {
	a.mu.Lock()
	var keys []aggKey
	for k := range a.counts {
		if k.minute < cur {
			keys = append(keys, k)
		}
	}
	taken := make(map[aggKey]*aggCount, len(keys))
	for _, k := range keys {
		taken[k] = a.counts[k]
		delete(a.counts, k)
		delete(a.perMin, k.minute)
	}
	a.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].minute != keys[j].minute {
			return keys[i].minute < keys[j].minute
		}
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		return keys[i].who < keys[j].who
	})
	var errs []error
	for _, k := range keys {
		c := taken[k]
		if _, err := a.app.Append(ctx, c.record(k)); err != nil {
			errs = append(errs, err)
			a.mu.Lock()
			a.add(k, c) // retried at the next tick
			a.mu.Unlock()
		}
	}
	err := errors.Join(errs...)
	if err != nil && a.OnError != nil {
		a.OnError(err)
	}
	return err
}

// Close stops the goroutine and appends every count, the current minute's
// included.
func (a *Aggregator) Close(ctx context.Context) error {
	if a.stop != nil {
		close(a.stop)
		select {
		case <-a.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return a.flush(ctx, 1<<62)
}

// record is the aggregate record of counter c under k.
func (c *aggCount) record(k aggKey) Record {
	rec := Record{Time: time.Unix(k.minute*60, 0), Kind: k.kind}
	if k.kind == KindAuthRefused {
		rec.ClientIP, rec.Status = k.who, 401
		rec.Detail, _ = json.Marshal(map[string]int64{"count": c.n, "window_seconds": 60})
		return rec
	}
	rec.KeyID, rec.ClientIP = k.who, c.ip
	statuses := make(map[string]int64, len(c.statuses))
	var most int64
	for st, n := range c.statuses {
		statuses[strconv.FormatInt(st, 10)] = n
		if n > most || n == most && st < rec.Status {
			rec.Status, most = st, n // the most frequent status, the lowest on a tie
		}
	}
	rec.Detail, _ = json.Marshal(struct {
		Count         int64            `json:"count"`
		WindowSeconds int              `json:"window_seconds"`
		Statuses      map[string]int64 `json:"statuses"`
	}{c.n, 60, statuses})
	return rec
}
