package server

import (
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/warden-llm/warden/server/listener"
)

// The guards that run before any key is looked up: load shedding
// (Config.MaxRPS), a cooling-off ban for addresses that keep failing
// authentication (Config.AuthFailLimit), and the admin allowlist
// (Config.AdminAllow) in front of /admin and /metrics.

// loopbackOnly is the admin allowlist when none is configured.
var loopbackOnly = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

var (
	errShed = &apiError{Status: http.StatusServiceUnavailable, Type: typeServer, Code: "server_busy",
		Message: "The server is shedding load; retry shortly.", RetryAfter: 1}
	errIPNotAllowed = &apiError{Status: http.StatusForbidden, Type: typeInvalidRequest, Code: "ip_not_allowed",
		Message: "Requests from this address are not allowed here."}
	errIPBanned = &apiError{Status: http.StatusForbidden, Type: typeInvalidRequest, Code: "ip_banned",
		Message: "Too many failed authentications from this address; it is refused for a while."}
)

// clientAddr is the request's client address (the peer, or X-Forwarded-For
// from a trusted proxy), or the zero Addr.
func clientAddr(c *gin.Context) netip.Addr {
	if st := stateOf(c); st != nil {
		return st.addr
	}
	return parseAddr(c.ClientIP())
}

// parseAddr is ip as an unmapped address, or the zero Addr.
func parseAddr(ip string) netip.Addr {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// adminOnly refuses /admin and /metrics to addresses outside AdminAllow.
func (s *Server) adminOnly(c *gin.Context) {
	allow := s.cfg.AdminAllow
	if len(allow) == 0 {
		allow = loopbackOnly
	}
	if !listener.Allowed(allow, clientAddr(c)) {
		s.writeError(c, errIPNotAllowed)
		return
	}
	c.Next()
}

// shed refuses requests past MaxRPS (a token bucket of one second's
// burst) with 503 before anything else is done for them.
func (s *Server) shed(c *gin.Context) {
	if s.shedder != nil && !s.shedder.take(s.now()) {
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.shed.Inc()
		}
		s.refusedBeforeAuth(c)
		s.writeError(c, errShed)
		return
	}
	c.Next()
}

// bucket is a token bucket: rate tokens a second, at most rate held.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64) *bucket { return &bucket{rate: rate, tokens: rate} }

func (b *bucket) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = math.Min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// maxBanned bounds the addresses the ban remembers; past it, the oldest
// windows are forgotten first.
const maxBanned = 10000

// banList counts failed authentications per address in one-minute
// windows. An address that reaches the limit gets 429 for the rest of its
// window, without a key lookup; one that keeps sending through that (the
// limit again) is refused with 403 for the cooling-off period.
type banList struct {
	limit int
	cool  time.Duration

	mu    sync.Mutex
	addrs map[netip.Addr]*banState
}

type banState struct {
	window   time.Time // start of the counting minute
	fails    int       // failed authentications in the window
	over     int       // requests refused with 429 in the window
	banUntil time.Time
}

func newBanList(limit int, cool time.Duration) *banList {
	return &banList{limit: limit, cool: cool, addrs: map[netip.Addr]*banState{}}
}

// refused says whether ip is refused now, and with what.
func (b *banList) refused(ip netip.Addr, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.addrs[ip]
	switch {
	case st == nil:
		return nil
	case now.Before(st.banUntil):
		return errIPBanned
	case st.fails >= b.limit && now.Sub(st.window) < time.Minute:
		if st.over++; st.over >= b.limit {
			st.banUntil = now.Add(b.cool)
			return errIPBanned
		}
		return &apiError{Status: http.StatusTooManyRequests, Type: "requests", Code: "too_many_failed_authentications",
			Message:    "Too many failed authentications from this address; slow down.",
			RetryAfter: max(1, int(math.Ceil((time.Minute - now.Sub(st.window)).Seconds())))}
	}
	return nil
}

// failed counts a failed authentication.
func (b *banList) failed(ip netip.Addr, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.addrs[ip]
	if st == nil {
		if len(b.addrs) >= maxBanned && !b.forget(now) {
			return // every slot holds a ban in force: this address is not counted
		}
		st = &banState{window: now}
		b.addrs[ip] = st
	}
	if now.Sub(st.window) >= time.Minute {
		st.window, st.fails, st.over = now, 0, 0
	}
	st.fails++
}

// forget drops addresses with no ban in force, those with an old window
// first; a ban in force is never dropped, so an attacker cannot lift its
// own by failing from very many addresses. It reports whether there is
// room for one more.
func (b *banList) forget(now time.Time) bool {
	for ip, st := range b.addrs {
		if now.After(st.banUntil) && now.Sub(st.window) >= time.Minute {
			delete(b.addrs, ip)
		}
	}
	// Make room for a tenth at once, so a flood of new addresses costs one
	// scan per thousand of them, not one each.
	for ip, st := range b.addrs {
		if len(b.addrs) <= maxBanned*9/10 {
			break
		}
		if now.After(st.banUntil) {
			delete(b.addrs, ip)
		}
	}
	return len(b.addrs) < maxBanned
}

// refusedBeforeAuth counts a request refused before its key was looked up
// in the per-address aggregate audit record of refused attempts.
func (s *Server) refusedBeforeAuth(c *gin.Context) {
	if s.cfg.OnAuthRefused != nil {
		s.cfg.OnAuthRefused(c.ClientIP())
	}
}
