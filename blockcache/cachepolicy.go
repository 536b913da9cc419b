package blockcache

// Cache replacement: a simplified 2Q. Clean blocks fetched from the store
// (demand misses and read-ahead) enter a probation list; a second use moves
// a block to the protected list (see touch), as does finishing the upload of a written
// block (a block just written is likely to be read again). Eviction takes
// the probation tail while probation holds more than a quarter of the
// slots (or nothing is protected), else the protected tail. A sequential
// scan therefore cycles through probation without pushing out the blocks
// that were used twice. With Policy "lru" both kinds go to one list in
// plain LRU order. Dirty blocks are on neither list and are never evicted.

// Replacement policies (CacheConfig.Policy).
const (
	// Policy2Q is the default: probation and protected lists.
	Policy2Q = "2q"
	// PolicyLRU is plain least-recently-used.
	PolicyLRU = "lru"
)

// cleanList is an intrusive doubly linked list of clean entries, most
// recently used first.
type cleanList struct {
	head, tail *entry
	n          int
}

func (l *cleanList) pushFront(e *entry) {
	e.prev, e.next, e.list = nil, l.head, l
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
	l.n++
}

func (l *cleanList) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next, e.list = nil, nil, nil
	l.n--
}

// addClean puts a clean entry on its list: protected when hot (or under
// LRU), else probation. Caller holds mu.
func (c *Cache) addClean(e *entry, hot bool) {
	if hot || c.cfg.Policy == PolicyLRU {
		c.prot.pushFront(e)
	} else {
		c.prob.pushFront(e)
	}
}

// removeClean takes an entry off its list, if any. Caller holds mu.
func (c *Cache) removeClean(e *entry) {
	if e.list != nil {
		e.list.remove(e)
	}
}

// touch records a hit. A block on probation is promoted only by a second,
// separate use: not by the first read of a block read-ahead fetched, nor
// by another read of the block the volume's previous read hit (a
// sequential reader in requests smaller than a block). Caller holds mu.
func (c *Cache) touch(e *entry) {
	again := e.v.lastRead == e.block
	e.v.lastRead = e.block
	if e.list == nil || (e.list == &c.prot && c.prot.head == e) {
		return
	}
	l := &c.prot
	if e.list == &c.prob && (e.prefetched || again) {
		e.prefetched = false
		l = &c.prob
	}
	e.list.remove(e)
	l.pushFront(e)
}

// hasClean reports whether any clean entry exists. Caller holds mu.
func (c *Cache) hasClean() bool { return c.prob.n+c.prot.n > 0 }

// evictionOrder calls fn with clean entries in the order they should be
// evicted until fn returns false. Caller holds mu.
func (c *Cache) evictionOrder(fn func(e *entry) bool) {
	first, second := &c.prot, &c.prob
	if c.prob.n > max(len(c.slots)/4, 1) || c.prot.n == 0 {
		first, second = second, first
	}
	for _, l := range []*cleanList{first, second} {
		for e := l.tail; e != nil; {
			prev := e.prev
			if !fn(e) {
				return
			}
			e = prev
		}
	}
}
