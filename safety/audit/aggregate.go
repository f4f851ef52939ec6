package audit

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
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
// MaxIPs+1 records a minute.
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
	counts map[aggKey]int64
	perMin map[int64]int // distinct IPs per minute
	stop   chan struct{}
	done   chan struct{}
}

type aggKey struct {
	minute int64 // unix minute
	ip     string
}

// NewAggregator returns an Aggregator appending through app; Start it.
func NewAggregator(app Appender) *Aggregator {
	return &Aggregator{app: app, counts: map[aggKey]int64{}, perMin: map[int64]int{}}
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
	k := aggKey{m, ip}
	if _, ok := a.counts[k]; !ok {
		max := a.MaxIPs
		if max <= 0 {
			max = 10000
		}
		if a.perMin[m] >= max {
			k.ip = OtherIPs
		} else {
			a.perMin[m]++
		}
	}
	a.counts[k]++
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
	taken := make(map[aggKey]int64, len(keys))
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
		return keys[i].ip < keys[j].ip
	})
	var errs []error
	for _, k := range keys {
		n := taken[k]
		detail, _ := json.Marshal(map[string]int64{"count": n, "window_seconds": 60})
		_, err := a.app.Append(ctx, Record{
			Time:     time.Unix(k.minute*60, 0),
			Kind:     KindAuthRefused,
			ClientIP: k.ip,
			Status:   401,
			Detail:   detail,
		})
		if err != nil {
			errs = append(errs, err)
			a.mu.Lock()
			a.counts[k] += n // retried at the next tick
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
