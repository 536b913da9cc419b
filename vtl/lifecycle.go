package vtl

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// CreateOptions describe tapes to create.
type CreateOptions struct {
	// BarcodePrefix is 1 to 4 upper-case letters; barcodes are the prefix
	// followed by a base-36 serial, 8 characters in all.
	BarcodePrefix string
	// Count is the number of tapes (at least 1).
	Count int
	// Size is each tape's capacity in bytes (Config.MinTapeSize to
	// Config.MaxTapeSize).
	Size int64
	// Pool is the pool the tapes archive to (default PoolDefault).
	Pool string
	// WORM makes write-once tapes: data can be appended but never
	// overwritten or erased.
	WORM bool
}

// DeleteOptions control DeleteTape.
type DeleteOptions struct {
	// BypassGovernance lets an administrator delete a tape under a
	// governance-mode retention lock; it is recorded in the audit trail
	// with Reason. It has no effect on compliance mode.
	BypassGovernance bool
	Reason           string
}

func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 4 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 'A' || p[i] > 'Z' {
			return false
		}
	}
	return true
}

// CreateTapes creates tapes in free storage slots. Barcodes are never
// reused, even after a tape is deleted.
func (l *Library) CreateTapes(ctx context.Context, o CreateOptions) ([]TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	out, err := l.createLocked(o)
	if err != nil {
		return nil, err
	}
	if err := l.saveLocked(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

func (l *Library) createLocked(o CreateOptions) ([]TapeInfo, error) {
	if !validPrefix(o.BarcodePrefix) {
		return nil, fmt.Errorf("%w: barcode prefix %q (1-4 upper-case letters)", ErrInvalid, o.BarcodePrefix)
	}
	if o.Count < 1 {
		return nil, fmt.Errorf("%w: count %d", ErrInvalid, o.Count)
	}
	if o.Size < l.cfg.MinTapeSize || o.Size > l.cfg.MaxTapeSize {
		return nil, fmt.Errorf("%w: size %d not in [%d, %d]", ErrInvalid, o.Size, l.cfg.MinTapeSize, l.cfg.MaxTapeSize)
	}
	if o.Pool == "" {
		o.Pool = PoolDefault
	}
	if _, ok := l.cfg.Pools[o.Pool]; !ok {
		return nil, fmt.Errorf("%w: pool %q", ErrInvalid, o.Pool)
	}
	active := 0
	for _, t := range l.st.Tapes {
		if t.Status != StatusArchived {
			active++
		}
	}
	if active+o.Count > l.cfg.MaxTapes {
		return nil, fmt.Errorf("%w: %d tapes, limit %d", ErrNoSpace, active+o.Count, l.cfg.MaxTapes)
	}
	occ := l.occupantsLocked()
	l.reserveHomeSlots(occ)
	var free []uint16
	for i := 0; i < l.cfg.Slots && len(free) < o.Count; i++ {
		if occ[uint16(addrSlot+i)] == nil {
			free = append(free, uint16(addrSlot+i))
		}
	}
	if len(free) < o.Count {
		return nil, fmt.Errorf("%w: %d free slots for %d tapes", ErrNoSpace, len(free), o.Count)
	}
	digits := 8 - len(o.BarcodePrefix)
	limit := uint64(1)
	for i := 0; i < digits; i++ {
		limit *= 36
	}
	now := l.cfg.Now().UTC()
	out := make([]TapeInfo, 0, o.Count)
	for i := 0; i < o.Count; i++ {
		var bc string
		for {
			n := l.st.Counters[o.BarcodePrefix]
			if n >= limit {
				return nil, fmt.Errorf("%w: barcode prefix %s exhausted", ErrNoSpace, o.BarcodePrefix)
			}
			l.st.Counters[o.BarcodePrefix] = n + 1
			s := strings.ToUpper(strconv.FormatUint(n, 36))
			bc = o.BarcodePrefix + strings.Repeat("0", digits-len(s)) + s
			if _, used := l.st.Barcodes[bc]; !used {
				break
			}
		}
		t := &TapeInfo{
			Barcode: bc, Size: o.Size, Pool: o.Pool, WORM: o.WORM, Status: StatusAvailable,
			Element: free[i], Created: now, DataPrefix: l.cfg.Prefix + "tapes/" + bc + "/",
		}
		l.st.Barcodes[bc] = now
		l.st.Tapes[bc] = t
		l.auditLocked("create", bc, fmt.Sprintf("size=%d pool=%s worm=%v", o.Size, o.Pool, o.WORM))
		out = append(out, l.infoLocked(t))
	}
	return out, nil
}

func (l *Library) infoLocked(t *TapeInfo) TapeInfo {
	c := *t
	c.Location = l.location(t)
	return c
}

// Tapes lists every tape (archived ones included), by barcode.
func (l *Library) Tapes() []TapeInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mergeUsageLocked()
	var out []TapeInfo
	for _, t := range l.sortedTapesLocked() {
		out = append(out, l.infoLocked(t))
	}
	return out
}

// Tape returns one tape.
func (l *Library) Tape(barcode string) (TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mergeUsageLocked()
	t := l.st.Tapes[barcode]
	if t == nil {
		return TapeInfo{}, fmt.Errorf("%w: %s", ErrNotFound, barcode)
	}
	return l.infoLocked(t), nil
}

// Audit returns the audit trail, oldest first.
func (l *Library) Audit() []AuditEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]AuditEvent(nil), l.st.Audit...)
}

// tapeLocked finds a tape that is not in a drive.
func (l *Library) tapeLocked(barcode string) (*TapeInfo, error) {
	if l.closed {
		return nil, ErrClosed
	}
	t := l.st.Tapes[barcode]
	if t == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, barcode)
	}
	if k, _ := l.elementKind(t.Element); k == elemDrive {
		return nil, fmt.Errorf("%w: %s is in %s", ErrBusy, barcode, l.location(t))
	}
	return t, nil
}

// DeleteTape deletes a tape and its data. The barcode stays used. A tape
// under a retention lock cannot be deleted before its retain-until date:
// in compliance mode never, in governance mode only with
// BypassGovernance, which is audited.
func (l *Library) DeleteTape(ctx context.Context, barcode string, o DeleteOptions) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.tapeLocked(barcode)
	if err != nil {
		return err
	}
	if now := l.cfg.Now(); now.Before(t.RetainUntil) {
		switch {
		case t.RetentionMode == RetentionGovernance && o.BypassGovernance:
			l.auditLocked("retention-bypass", barcode, fmt.Sprintf("governance lock until %s bypassed: %s", t.RetainUntil.Format(time.RFC3339), o.Reason))
		default:
			return fmt.Errorf("%w: %s (%s) until %s", ErrRetentionLocked, barcode, t.RetentionMode, t.RetainUntil.Format(time.RFC3339))
		}
	}
	// Forget the tape durably first, then delete its objects: a failure
	// leaves stray objects, never a listed tape without data.
	delete(l.st.Tapes, barcode)
	if err := l.saveLocked(ctx); err != nil {
		l.st.Tapes[barcode] = t
		return err
	}
	l.auditLocked("delete", barcode, o.Reason)
	store := l.cfg.Store
	if t.Status == StatusArchived || t.Status == StatusRetrieved {
		store = l.cfg.Pools[t.Pool].Store
	}
	var keys []string
	err = objstore.ListAll(ctx, store, t.DataPrefix, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err == nil {
		err = deleteKeys(ctx, store, keys)
	}
	if err != nil {
		l.log.Warn("deleting tape objects failed", "barcode", barcode, "prefix", t.DataPrefix, "err", err)
	}
	if err := l.autoCreateLocked(ctx); err != nil {
		l.log.Warn("automatic tape creation failed", "err", err)
	}
	return l.saveLocked(ctx)
}

// ImportTape moves an exported tape into a free import/export slot, from
// where the backup application moves it into the library.
func (l *Library) ImportTape(ctx context.Context, barcode string) (TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.tapeLocked(barcode)
	if err != nil {
		return TapeInfo{}, err
	}
	if t.Element != 0 || t.Status == StatusArchived {
		return TapeInfo{}, fmt.Errorf("%w: %s is %s", ErrBusy, barcode, l.location(t))
	}
	a, ok := l.freeLocked(elemIE)
	if !ok {
		return TapeInfo{}, fmt.Errorf("%w: no free import/export slot", ErrNoSpace)
	}
	t.Element = a
	l.auditLocked("import", barcode, l.location(t))
	l.changer.ua.EstablishAll(scsi.ASCImportExportAccessed, nil)
	return l.infoLocked(t), l.saveLocked(ctx)
}

// ExportTape takes a tape out of the library (from a storage or
// import/export slot); its data stays in place.
func (l *Library) ExportTape(ctx context.Context, barcode string) (TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.tapeLocked(barcode)
	if err != nil {
		return TapeInfo{}, err
	}
	if t.Element == 0 {
		return TapeInfo{}, fmt.Errorf("%w: %s is not in the library", ErrBusy, barcode)
	}
	t.Element = 0
	if t.Status == StatusAvailable {
		t.Status = StatusExported
	}
	l.auditLocked("export", barcode, "")
	l.changer.ua.EstablishAll(scsi.ASCImportExportAccessed, nil)
	if err := l.autoCreateLocked(ctx); err != nil {
		l.log.Warn("automatic tape creation failed", "err", err)
	}
	return l.infoLocked(t), l.saveLocked(ctx)
}

// ArchiveTape moves a tape out of the library into its pool: its objects
// are copied to the pool's store and prefix with the pool's storage class
// and removed from the library's, and the pool's retention lock starts.
// Archived tapes come back read-only (RetrieveTape).
func (l *Library) ArchiveTape(ctx context.Context, barcode string) (TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.tapeLocked(barcode)
	if err != nil {
		return TapeInfo{}, err
	}
	if t.Status == StatusArchived {
		return TapeInfo{}, fmt.Errorf("%w: %s is already archived", ErrBusy, barcode)
	}
	pool := l.cfg.Pools[t.Pool]
	// Copy, record the new place durably, then delete the originals: a
	// failure at any step leaves the tape readable where the saved state
	// says it is (at worst with a stray copy).
	old := *t
	var originals []string
	if t.Status != StatusRetrieved {
		dst := pool.Prefix + barcode + "/"
		originals, err = l.copyObjects(ctx, t.DataPrefix, dst, pool)
		if err != nil {
			return TapeInfo{}, err
		}
		t.DataPrefix = dst
		now := l.cfg.Now().UTC()
		t.Archived = now
		if pool.RetentionMode != "" {
			t.RetentionMode = pool.RetentionMode
			t.RetainUntil = now.AddDate(0, 0, pool.RetentionDays)
		}
	}
	t.Status, t.Element, t.ReadOnly = StatusArchived, 0, true
	if err := l.saveLocked(ctx); err != nil {
		*t = old
		return TapeInfo{}, err
	}
	l.auditLocked("archive", barcode, "pool="+t.Pool)
	if err := deleteKeys(ctx, l.cfg.Store, originals); err != nil {
		l.log.Warn("deleting archived tape's originals failed", "barcode", barcode, "err", err)
	}
	if err := l.autoCreateLocked(ctx); err != nil {
		l.log.Warn("automatic tape creation failed", "err", err)
	}
	return l.infoLocked(t), l.saveLocked(ctx)
}

// copyObjects copies every object under src (library store) to dst in the
// pool and returns the keys copied.
func (l *Library) copyObjects(ctx context.Context, src, dst string, pool Pool) ([]string, error) {
	var keys []string
	if err := objstore.ListAll(ctx, l.cfg.Store, src, func(o objstore.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("vtl: archive: %w", err)
	}
	for _, k := range keys {
		to := dst + strings.TrimPrefix(k, src)
		if pool.Store == l.cfg.Store {
			if _, err := l.cfg.Store.Copy(ctx, to, k, objstore.CopyOptions{ReplaceMetadata: true, StorageClass: pool.StorageClass, ContentType: "application/octet-stream"}); err != nil {
				return nil, fmt.Errorf("vtl: archive %s: %w", k, err)
			}
			continue
		}
		rc, info, err := l.cfg.Store.Get(ctx, k, objstore.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("vtl: archive %s: %w", k, err)
		}
		var buf bytes.Buffer
		_, err = buf.ReadFrom(rc)
		rc.Close()
		if err == nil {
			_, err = pool.Store.Put(ctx, to, &buf, info.Size, objstore.PutOptions{StorageClass: pool.StorageClass, ContentType: "application/octet-stream"})
		}
		if err != nil {
			return nil, fmt.Errorf("vtl: archive %s: %w", k, err)
		}
	}
	return keys, nil
}

// RetrieveTape brings an archived tape back into a free storage slot,
// read-only. Its data is read from the pool where it stays (objects in
// GLACIER or DEEP_ARCHIVE classes must have been restored first).
func (l *Library) RetrieveTape(ctx context.Context, barcode string) (TapeInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, err := l.tapeLocked(barcode)
	if err != nil {
		return TapeInfo{}, err
	}
	if t.Status != StatusArchived {
		return TapeInfo{}, fmt.Errorf("%w: %s is not archived", ErrBusy, barcode)
	}
	a, ok := l.freeLocked(elemSlot)
	if !ok {
		return TapeInfo{}, fmt.Errorf("%w: no free slot", ErrNoSpace)
	}
	t.Element, t.Status, t.ReadOnly = a, StatusRetrieved, true
	l.auditLocked("retrieve", barcode, l.location(t))
	return l.infoLocked(t), l.saveLocked(ctx)
}

// SetAutoCreate installs (or, with nil, removes) the automatic tape
// creation rule and applies it at once.
func (l *Library) SetAutoCreate(ctx context.Context, r *AutoCreateRule) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if r != nil {
		c := *r
		if c.MinAvailable < 1 {
			return fmt.Errorf("%w: minimum available %d", ErrInvalid, c.MinAvailable)
		}
		if _, err := l.checkCreate(CreateOptions{BarcodePrefix: c.BarcodePrefix, Count: 1, Size: c.Size, Pool: c.Pool, WORM: c.WORM}); err != nil {
			return err
		}
		r = &c
	}
	l.st.Auto = r
	if err := l.autoCreateLocked(ctx); err != nil {
		return err
	}
	return l.saveLocked(ctx)
}

// checkCreate validates create options without creating anything.
func (l *Library) checkCreate(o CreateOptions) (CreateOptions, error) {
	if !validPrefix(o.BarcodePrefix) {
		return o, fmt.Errorf("%w: barcode prefix %q", ErrInvalid, o.BarcodePrefix)
	}
	if o.Size < l.cfg.MinTapeSize || o.Size > l.cfg.MaxTapeSize {
		return o, fmt.Errorf("%w: size %d", ErrInvalid, o.Size)
	}
	if o.Pool == "" {
		o.Pool = PoolDefault
	}
	if _, ok := l.cfg.Pools[o.Pool]; !ok {
		return o, fmt.Errorf("%w: pool %q", ErrInvalid, o.Pool)
	}
	return o, nil
}

// autoCreateLocked applies the automatic creation rule: tapes that are in
// a slot, empty and writable count as available.
func (l *Library) autoCreateLocked(ctx context.Context) error {
	r := l.st.Auto
	if r == nil {
		return nil
	}
	l.mergeUsageLocked()
	avail := 0
	for _, t := range l.st.Tapes {
		if k, _ := l.elementKind(t.Element); (k == elemSlot || k == elemIE) && t.Used == 0 && !t.ReadOnly {
			avail++
		}
	}
	if avail >= r.MinAvailable {
		return nil
	}
	_, err := l.createLocked(CreateOptions{BarcodePrefix: r.BarcodePrefix, Count: r.MinAvailable - avail, Size: r.Size, Pool: r.Pool, WORM: r.WORM})
	if err != nil {
		return err
	}
	return l.saveLocked(ctx)
}
