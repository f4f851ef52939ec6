package phrase

// automaton is an Aho-Corasick automaton over bytes with a dense transition
// table on byte classes: every byte that occurs in some pattern has a class
// of its own and all other bytes share class 0, so a row is as wide as the
// patterns' alphabet, not 256.
type automaton struct {
	class  [256]uint16
	nclass int
	// next[s*nclass+c] is the state after reading a byte of class c in
	// state s; outFlag marks states where some pattern ends.
	next []uint32
	// next16 is next in half the memory, used when the states fit.
	next16 []uint16
	// live[s] is the length of the longest suffix of the input read so
	// far that a pattern could still extend: the longest proper pattern
	// prefix among s and its fail chain.
	live []int32
	outs [][]int32 // patterns ending in each state, longest first
	plen []int32
	// depth[s] is the length of the pattern prefix state s stands for.
	depth []int32
}

const outFlag = 1 << 31

// build makes the automaton for pats; pattern i is reported as i.
func build(pats [][]byte) *automaton {
	a := &automaton{plen: make([]int32, len(pats))}
	used := [256]bool{}
	for _, p := range pats {
		for _, b := range p {
			used[b] = true
		}
	}
	a.nclass = 1
	for b := range 256 {
		if used[b] {
			a.class[b] = uint16(a.nclass)
			a.nclass++
		}
	}
	// Trie, with children in a map while building.
	type node struct {
		depth int32
		fail  int32
		kids  map[uint16]int32
		term  int32
	}
	nodes := []node{{term: -1}}
	for i, p := range pats {
		a.plen[i] = int32(len(p))
		s := int32(0)
		for _, b := range p {
			c := a.class[b]
			k, ok := nodes[s].kids[c]
			if !ok {
				if nodes[s].kids == nil {
					nodes[s].kids = map[uint16]int32{}
				}
				k = int32(len(nodes))
				nodes[s].kids[c] = k
				nodes = append(nodes, node{depth: nodes[s].depth + 1, term: -1})
			}
			s = k
		}
		if nodes[s].term < 0 {
			nodes[s].term = int32(i)
		}
	}
	n, nc := len(nodes), a.nclass
	a.next = make([]uint32, n*nc)
	a.live = make([]int32, n)
	a.outs = make([][]int32, n)
	a.depth = make([]int32, n)
	for i := range nodes {
		a.depth[i] = nodes[i].depth
	}
	// Breadth-first: a state's fail target is complete before the state.
	queue := []int32{0}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := nodes[s].fail
		if t := nodes[s].term; t >= 0 {
			a.outs[s] = append(a.outs[s], t)
		}
		if s != 0 {
			a.outs[s] = append(a.outs[s], a.outs[f]...)
		}
		if len(nodes[s].kids) > 0 {
			a.live[s] = nodes[s].depth
		} else if s != 0 {
			a.live[s] = a.live[f]
		}
		for c := range nc {
			k, ok := nodes[s].kids[uint16(c)]
			if !ok {
				if s != 0 {
					a.next[int(s)*nc+c] = a.next[int(f)*nc+c]
				}
				continue
			}
			if s != 0 {
				nodes[k].fail = int32(a.next[int(f)*nc+c] &^ outFlag)
			}
			queue = append(queue, k)
			a.next[int(s)*nc+c] = uint32(k)
		}
	}
	// Flag the transitions into states where patterns end.
	for i, t := range a.next {
		if len(a.outs[t&^outFlag]) > 0 {
			a.next[i] = t | outFlag
		}
	}
	if n < outFlag16 {
		a.next16 = make([]uint16, len(a.next))
		for i, t := range a.next {
			a.next16[i] = uint16(t&^outFlag) | uint16(t>>16)&outFlag16
		}
		a.next = nil
	}
	return a
}

const outFlag16 = 1 << 15

// step returns the state after reading b in state s.
func (a *automaton) step(s uint32, b byte) uint32 {
	i := int(s)*a.nclass + int(a.class[b])
	if a.next16 != nil {
		return uint32(a.next16[i] &^ outFlag16)
	}
	return a.next[i] &^ outFlag
}

// scan runs the automaton over text and calls hit with the end of text
// consumed (exclusive) and the state for every position where some pattern
// ends; it returns the final state.
func (a *automaton) scan(text []byte, hit func(end int, s uint32)) uint32 {
	if a.next16 != nil {
		return a.scan16(text, hit)
	}
	var s uint32
	nc, class, next := a.nclass, &a.class, a.next
	for i, b := range text {
		s = next[int(s&^outFlag)*nc+int(class[b])]
		if s&outFlag != 0 {
			hit(i+1, s&^outFlag)
		}
	}
	return s &^ outFlag
}

func (a *automaton) scan16(text []byte, hit func(end int, s uint32)) uint32 {
	var s uint16
	nc, class, next := a.nclass, &a.class, a.next16
	for i, b := range text {
		s = next[int(s&^outFlag16)*nc+int(class[b])]
		if s&outFlag16 != 0 {
			hit(i+1, uint32(s&^outFlag16))
		}
	}
	return uint32(s &^ outFlag16)
}
