package sched

import (
	"slices"
	"time"
)

// model is one model's queue and slots. All fields are guarded by
// Scheduler.mu.
type model struct {
	name     string
	slots    int
	prefetch int // dispatched beyond slots, waiting in the backend (Config.Prefetch)
	inflight int
	keys     map[string]*keyState // keys holding slots or waiting
	// active holds the keys with waiters, in round-robin order; cur is the
	// key whose turn it is. Only active[cur] may have credited set.
	active  []*keyState
	cur     int
	waiting int
	hold    time.Duration // moving average of how long a slot is held
}

// keyState is one key's share of one model.
type keyState struct {
	id      string
	weight  int64
	held    int       // slots of this model the key holds
	waiters []*waiter // FIFO
	deficit int64
	// credited: the key got its quantum for the current visit.
	credited bool
	// users holds the key's end users with waiters (a delegate key's; a
	// request without one counts as the user ""), in round order; ucur is
	// the user whose turn it is. The key's turn goes to one of them by a
	// deficit round robin of its own, one request per visit, so one heavy
	// user cannot starve the key's others.
	users []*userState
	ucur  int
}

// userState is one end user's share of its key's turns on one model.
type userState struct {
	id       string
	waiting  int
	deficit  int64
	credited bool
}

// waiter is one blocked Acquire. granted, at are set under the lock before
// ready is closed.
type waiter struct {
	key     *keyState
	user    string
	cost    int64
	enq     time.Time
	ready   chan struct{}
	granted bool
	at      time.Time
}

func newModel(name string) *model {
	return &model{name: name, keys: make(map[string]*keyState)}
}

// key returns the state of id, creating it with weight(id).
func (m *model) key(id string, weight func(string) int) *keyState {
	k := m.keys[id]
	if k == nil {
		k = &keyState{id: id, weight: int64(max(weight(id), 1))}
		m.keys[id] = k
	}
	return k
}

func (m *model) idle() bool { return m.inflight == 0 && m.waiting == 0 }

// capacity is how many of m's requests may be in flight: its slots and
// its prefetch.
func (m *model) capacity() int { return m.slots + m.prefetch }

// dropKey forgets k once it neither holds nor waits; its deficit is already
// zero then.
func (m *model) dropKey(k *keyState) {
	if k.held == 0 && len(k.waiters) == 0 {
		delete(m.keys, k.id)
	}
}

// enqueue puts w at the back of its key's queue. A key that starts waiting
// joins the round just before the current key, that is, last.
func (m *model) enqueue(w *waiter) {
	k := w.key
	k.waiters = append(k.waiters, w)
	k.joinUser(w.user)
	m.waiting++
	if len(k.waiters) == 1 {
		m.active = slices.Insert(m.active, m.cur, k)
		m.cur++
		if m.cur >= len(m.active) {
			m.cur = 0
		}
	}
}

// remove takes w out of its key's queue (w is queued).
func (m *model) remove(w *waiter) {
	k := w.key
	i := slices.Index(k.waiters, w)
	if i < 0 {
		return
	}
	k.waiters = slices.Delete(k.waiters, i, i+1)
	k.leaveUser(w.user)
	m.waiting--
	if len(k.waiters) == 0 {
		m.deactivate(k)
	}
}

// deactivate takes a key without waiters out of the round; as in DRR, an
// idle key keeps no deficit.
func (m *model) deactivate(k *keyState) {
	i := slices.Index(m.active, k)
	if i < 0 {
		return
	}
	m.active = slices.Delete(m.active, i, i+1)
	if i < m.cur {
		m.cur--
	}
	if m.cur >= len(m.active) {
		m.cur = 0
	}
	k.deficit, k.credited = 0, false
}

// capFor is how many slots k may hold: all of them (and the prefetch)
// when nobody else waits, else slots−1 (at least 1), prefetched requests
// included, so another key always finds a slot soon: of the slots the
// backend runs, k holds at most slots−1.
func (m *model) capFor(k *keyState) int {
	if len(m.active) == 1 && m.active[0] == k {
		return m.capacity()
	}
	return max(m.slots-1, 1)
}

// next picks the waiter to dispatch into a free slot by deficit round robin,
// takes it off its queue and charges its key; nil when no key may take a
// slot now. Keys at their cap are passed over without credit.
func (m *model) next(quantum int64) *waiter {
	n := len(m.active)
	if n == 0 {
		return nil
	}
	for {
		eligible := 0
		for range n {
			k := m.active[m.cur]
			if k.held < m.capFor(k) {
				eligible++
				if !k.credited {
					k.deficit += quantum * k.weight
					k.credited = true
				}
				if w := k.head(quantum); w.cost <= k.deficit {
					k.deficit -= w.cost
					k.take(w)
					m.waiting--
					if len(k.waiters) == 0 {
						m.deactivate(k) // cur now points at the next key
					}
					return w
				}
			}
			k.credited = false
			m.cur = (m.cur + 1) % n
		}
		if eligible == 0 {
			return nil
		}
		m.skipRounds(quantum)
	}
}

// skipRounds is called after a full round in which no eligible key could
// afford its head request (costs far above the quantum). It credits every
// eligible key with the rounds that would pass before the first one can,
// minus one: the same outcome as running those rounds, in O(keys).
func (m *model) skipRounds(quantum int64) {
	rounds := int64(-1)
	for _, k := range m.active {
		if k.held >= m.capFor(k) {
			continue
		}
		step := quantum * k.weight
		r := (k.head(quantum).cost - k.deficit + step - 1) / step
		if rounds < 0 || r < rounds {
			rounds = r
		}
	}
	if rounds <= 1 {
		return
	}
	for _, k := range m.active {
		if k.held < m.capFor(k) {
			k.deficit += (rounds - 1) * quantum * k.weight
		}
	}
}

// observe folds one slot hold time into the moving average used for
// Retry-After hints.
func (m *model) observe(d time.Duration) {
	if d < 0 {
		return
	}
	if m.hold == 0 {
		m.hold = d
		return
	}
	m.hold += (d - m.hold) / 8
}

// joinUser counts one more waiter of user; a user that starts waiting joins
// the key's round just before the current user, that is, last.
func (k *keyState) joinUser(user string) {
	for _, u := range k.users {
		if u.id == user {
			u.waiting++
			return
		}
	}
	k.users = slices.Insert(k.users, k.ucur, &userState{id: user, waiting: 1})
	if len(k.users) > 1 {
		k.ucur++
	}
	if k.ucur >= len(k.users) {
		k.ucur = 0
	}
}

// leaveUser counts one waiter of user less; a user without waiters leaves
// the round and, as in DRR, keeps no deficit.
func (k *keyState) leaveUser(user string) {
	i := slices.IndexFunc(k.users, func(u *userState) bool { return u.id == user })
	if i < 0 {
		return
	}
	if k.users[i].waiting--; k.users[i].waiting > 0 {
		return
	}
	k.users = slices.Delete(k.users, i, i+1)
	if i < k.ucur {
		k.ucur--
	}
	if k.ucur >= len(k.users) {
		k.ucur = 0
	}
}

// oldest is user's oldest waiter.
func (k *keyState) oldest(user string) *waiter {
	for _, w := range k.waiters {
		if w.user == user {
			return w
		}
	}
	return nil
}

// head is the waiter the key dispatches next: its only user's oldest, or
// the one the round among its users picks. The pick changes only when it
// is taken (take), so asking again gives the same waiter.
func (k *keyState) head(quantum int64) *waiter {
	if len(k.users) <= 1 {
		return k.waiters[0]
	}
	for {
		for range len(k.users) {
			u := k.users[k.ucur]
			if !u.credited {
				u.deficit += quantum
				u.credited = true
			}
			if w := k.oldest(u.id); w.cost <= u.deficit {
				return w
			}
			u.credited = false
			k.ucur = (k.ucur + 1) % len(k.users)
		}
		// Nobody could afford their oldest request this round (costs far
		// above the quantum): credit the rounds before the first one can,
		// minus one, in one step.
		rounds := int64(-1)
		for _, u := range k.users {
			r := (k.oldest(u.id).cost - u.deficit + quantum - 1) / quantum
			if rounds < 0 || r < rounds {
				rounds = r
			}
		}
		for _, u := range k.users {
			u.deficit += max(rounds-1, 0) * quantum
		}
	}
}

// take removes the waiter head picked from the key's queue, charges its
// user, and passes the turn to the next user: one request per visit.
func (k *keyState) take(w *waiter) {
	i := slices.Index(k.waiters, w)
	k.waiters = slices.Delete(k.waiters, i, i+1) // zeroes the freed tail slot
	if len(k.users) > 1 {
		u := k.users[k.ucur]
		u.deficit -= w.cost
		u.credited = false
		k.ucur = (k.ucur + 1) % len(k.users)
	}
	k.leaveUser(w.user)
}
