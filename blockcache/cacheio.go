package blockcache

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// readBlock fills p with bytes [boff, boff+len(p)) of block b of v: from
// the cache on a hit, as zeros for a hole, else from the store (one fetch
// shared by concurrent readers, with read-ahead for sequential readers).
func (c *Cache) readBlock(ctx context.Context, v *vstate, b int64, p []byte, boff int) error {
	c.mu.Lock()
	if err := c.usable(); err != nil {
		c.mu.Unlock()
		return err
	}
	if e := v.entries[b]; e != nil {
		e.pins++
		c.touch(e)
		off := c.slotOff(e.slot) + int64(boff)
		c.mu.Unlock()
		v.hits.Add(1)
		_, err := c.data.ReadAt(p, off)
		c.mu.Lock()
		c.unpin(e)
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cache read: %w", err)
		}
		return nil
	}
	ref := v.bm.Blocks[b]
	if ref.ID.IsZero() {
		c.mu.Unlock()
		v.hits.Add(1)
		clear(p)
		return nil
	}
	v.misses.Add(1)
	f := c.startFetch(v, b, ref)
	c.readAhead(v, b)
	c.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.err != nil {
		return f.err
	}
	// The block may have grown since the fetch started (Resize): what
	// the chunk does not hold reads as zeros.
	k := 0
	if boff < len(f.raw) {
		k = copy(p, f.raw[boff:])
	}
	clear(p[k:])
	return nil
}

// writeBlock stores p at boff in block b of v. A block not in the cache
// gets a new dirty slot (a partial write first reads the rest of the block
// from the store, unless it is a hole); a clean cached block is marked
// dirty in the journal, durably, before its slot is overwritten, so a
// crash never leaves a slot the index calls clean with other contents.
// When the upload buffer is full, writeBlock waits for the uploader.
func (c *Cache) writeBlock(ctx context.Context, v *vstate, b int64, p []byte, boff int) error {
	c.mu.Lock()
	for {
		if err := c.usable(); err != nil {
			c.mu.Unlock()
			return err
		}
		if v.deleted {
			c.mu.Unlock()
			return ErrClosed
		}
		n := v.bm.BlockLen(b)
		if e := v.entries[b]; e != nil {
			e.pins++
			e.writers++
			e.gen++
			c.markDirty(e)
			guard, off := e.guard, c.slotOff(e.slot)+int64(boff)
			c.mu.Unlock()
			err := c.j.commit(guard)
			if err == nil {
				if _, werr := c.data.WriteAt(p, off); werr != nil {
					err = fmt.Errorf("cache write: %w", werr)
				}
			}
			c.mu.Lock()
			c.writeDone(e)
			c.mu.Unlock()
			return err
		}
		ref := v.bm.Blocks[b]
		full := boff == 0 && len(p) == n
		var old []byte // the block's current content, for a partial write
		if !full && !ref.ID.IsZero() {
			raw, err := c.fetchForWrite(ctx, v, b, ref)
			if err != nil {
				return err // fetchForWrite released mu
			}
			if raw == nil || v.entries[b] != nil || v.bm.Blocks[b] != ref {
				continue // cached by the fetch, or changed: start over
			}
			old = raw
		}
		k := fetchKey{v.key, b}
		if f := c.fills[k]; f != nil {
			// Another write is filling a slot for this block: wait for it
			// to index the block, then write into that slot.
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			c.mu.Lock()
			continue
		}
		s, err := c.allocSlot(ctx, true)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		if v.deleted || v.entries[b] != nil || v.bm.Blocks[b] != ref || c.fills[k] != nil {
			c.releaseSlot(s)
			continue
		}
		// Fill the slot (the block's old bytes or zeros, then p) before
		// the block is indexed: until then no reader or writer can reach
		// the slot, so the fill cannot overwrite a concurrent write into
		// the same block, a reader never sees the slot's previous
		// occupant, and no journal record names the slot before it holds
		// the block (CACHED.md, "Filling").
		f := &slotFill{slot: s, done: make(chan struct{})}
		c.fills[k] = f
		c.mu.Unlock()
		err = c.failpoint("cache.slot-fill")
		if err == nil {
			err = c.fillSlot(s, n, old, p, boff, full)
		}
		c.mu.Lock()
		delete(c.fills, k)
		close(f.done)
		if err != nil {
			c.releaseSlot(s)
			c.mu.Unlock()
			return err
		}
		if v.deleted || v.entries[b] != nil || v.bm.Blocks[b] != ref || c.usable() != nil {
			// Unmapped, fetched, resized or deleted while filling: the
			// slot's copy is stale; start over against the new state.
			c.releaseSlot(s)
			continue
		}
		e := &entry{v: v, block: b, slot: s, dirty: true, gen: 1}
		v.entries[b] = e
		c.slots[s] = e
		c.nDirty++
		v.dirty++
		// The slot was free in the durable index and already holds the
		// block: the record may become durable at any time from here on.
		c.j.append(journalRec{typ: recSlot, slot: uint32(s), key: v.key, block: uint64(b), state: slotStateDirty})
		c.enqueue(e)
		c.broadcast()
		c.mu.Unlock()
		return nil
	}
}

// slotFill is a new slot a write is filling before it indexes the block.
type slotFill struct {
	slot int32
	done chan struct{}
}

// fillSlot writes block content into slot s (n bytes long): p at boff over
// old (the block's stored bytes) or over zeros when old is nil. A full
// write is p alone. Caller does not hold mu.
func (c *Cache) fillSlot(s int32, n int, old, p []byte, boff int, full bool) error {
	off := c.slotOff(s)
	switch {
	case full:
	case old != nil:
		buf := c.getBuf(n)
		defer c.putBuf(buf)
		clear(buf[copy(buf, old):])
		copy(buf[boff:], p)
		p, boff = buf, 0
	default:
		if err := c.writeZeros(off, n); err != nil {
			return err
		}
	}
	if _, err := c.data.WriteAt(p, off+int64(boff)); err != nil {
		return fmt.Errorf("cache write: %w", err)
	}
	return nil
}

// writeDone ends a write to e's slot. The uploader does not take an entry
// while a write to it is under way, and the generation moves at both ends
// of a write, so an upload never records a slot a write was changing.
// Caller holds mu.
func (c *Cache) writeDone(e *entry) {
	e.gen++
	e.writers--
	if e.dirty && e.writers == 0 && !e.uploading && c.vols[e.v.key] == e.v && e.v.entries[e.block] == e {
		c.enqueue(e)
	}
	c.unpin(e)
}

// fetchForWrite reads block b from the store for a partial write, retrying
// while the store is unreachable (a write waits; it does not fail because
// the store is slow). It returns with mu held and the block's bytes, or
// with mu released and an error. Caller holds mu.
func (c *Cache) fetchForWrite(ctx context.Context, v *vstate, b int64, ref snapshot.BlockRef) ([]byte, error) {
	delay := c.cfg.RetryDelay
	for {
		f := c.startFetch(v, b, ref)
		c.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err == nil {
			c.mu.Lock()
			return f.raw, nil
		}
		if !objstore.IsRetryable(f.err) {
			return nil, f.err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (store unreachable: %w)", ctx.Err(), f.err)
		}
		delay = min(2*delay, c.maxRetryDelay())
		c.mu.Lock()
		if v.entries[b] != nil || v.bm.Blocks[b] != ref {
			return nil, nil
		}
	}
}

// unmapBlock turns block b of v into a hole and drops it from the cache.
func (c *Cache) unmapBlock(ctx context.Context, v *vstate, b int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if err := c.usable(); err != nil {
			return err
		}
		e := v.entries[b]
		if e == nil || e.pins == 0 {
			break
		}
		if err := c.wait(ctx); err != nil {
			return err
		}
	}
	var seq uint64
	e := v.entries[b]
	if e != nil {
		c.dropEntryCounts(e)
		delete(v.entries, b)
		c.slots[e.slot] = nil
		c.j.append(journalRec{typ: recFree, slot: uint32(e.slot)})
	}
	if !v.bm.Blocks[b].ID.IsZero() {
		v.bm.Blocks[b] = snapshot.BlockRef{}
		v.mapDirty = true
	}
	seq = c.j.append(journalRec{typ: recMap, slot: noSlot, key: v.key, block: uint64(b)})
	if v.dirty == 0 {
		v.lastRecovery = time.Now()
	}
	if e == nil {
		return nil
	}
	// The slot is reused only once its free record is durable.
	c.mu.Unlock()
	err := c.j.commit(seq)
	c.mu.Lock()
	if err != nil {
		return err
	}
	c.free = append(c.free, e.slot)
	c.broadcast()
	return nil
}
