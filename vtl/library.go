package vtl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/scsi"
)

// Changer models (Config.ChangerModel).
const (
	ModelAWS = "AWS-Gateway-VTL"
	ModelSTK = "STK-L700"
	ModelIBM = "IBM-03584L32-0402"
)

// Pool names every library knows (Config.Pools may redefine them or add
// others).
const (
	PoolDefault     = "default"
	PoolArchive     = "archive"
	PoolDeepArchive = "deep-archive"
)

// Retention lock modes of a pool.
const (
	RetentionGovernance = "governance"
	RetentionCompliance = "compliance"
)

// Pool is where archived tapes go.
type Pool struct {
	// StorageClass is the storage class archived objects get
	// ("GLACIER", "DEEP_ARCHIVE"; "" keeps the store's default).
	StorageClass string `json:"storage_class,omitempty"`
	// Store holds archived tapes; nil means the library's store.
	Store objstore.Store `json:"-"`
	// Prefix is the key prefix of archived tapes in Store (default
	// "<library prefix>archive/<pool name>/").
	Prefix string `json:"prefix,omitempty"`
	// RetentionMode ("", "governance" or "compliance") and RetentionDays
	// lock archived tapes against deletion for that many days after
	// archiving.
	RetentionMode string `json:"retention_mode,omitempty"`
	RetentionDays int    `json:"retention_days,omitempty"`
}

// Config configures a Library.
type Config struct {
	// Store holds the tapes and the library state. Required.
	Store objstore.Store
	// Prefix is the key prefix of everything the library stores (for
	// example "vtl/gw1/").
	Prefix string
	// Gateway names the library in its iSCSI target names
	// (iqn.2026-11.io.sluicegw:<gateway>-mediachanger, ...-tapedrive-01).
	// Required; lower-case letters, digits, '-' and '.'.
	Gateway string
	// ChangerModel is the emulated changer: ModelAWS (default), ModelSTK or
	// ModelIBM.
	ChangerModel string
	// Drives (default 10), Slots (default 1600) and IESlots (default 10)
	// size the library.
	Drives, Slots, IESlots int
	// MaxTapes bounds the tapes not archived (default 1500).
	MaxTapes int
	// MinTapeSize and MaxTapeSize bound tape sizes (default 100 GiB and
	// 15 TiB).
	MinTapeSize, MaxTapeSize int64
	// MaxBlockSize is the largest record (default and at most 1 MiB... up
	// to 16 MiB; default 1 MiB).
	MaxBlockSize int
	// SegmentSize is the record data per segment object (default 64 MiB).
	SegmentSize int
	// UploadConcurrency is the number of segments each drive compresses
	// and uploads at once (default 2). A writing drive holds at most
	// UploadConcurrency+1 raw segments and UploadConcurrency compressed
	// ones in memory.
	UploadConcurrency int
	// ReadAhead is the number of segments each reading drive fetches
	// ahead of the one it reads (default 2).
	ReadAhead int
	// Compression is "lz4" (default), "zstd" or "none".
	Compression string
	// Pools defines archive pools; PoolDefault, PoolArchive (GLACIER) and
	// PoolDeepArchive (DEEP_ARCHIVE) exist unless redefined here.
	Pools map[string]Pool
	// OnEject, when set, is called (without locks held) with the barcode
	// of every tape the backup application moves into an import/export
	// slot, AWS's "eject": the daemon archives it (ArchiveTape) when the
	// tape's pool says so.
	OnEject func(barcode string)
	// Logger receives diagnostics and the audit trail; nil discards.
	Logger *slog.Logger
	// Now is the clock (default time.Now), for retention tests.
	Now func() time.Time
	// Failpoint, when set, is called at every durability boundary
	// ("vtl/segment-upload", "vtl/index-commit", "vtl/state-save"); an
	// error it returns fails that step. For tests.
	Failpoint func(name string) error

	// chunkSegs is the segments per index chunk of new tapes (tests
	// shrink it).
	chunkSegs int
}

// Element addresses of the changer.
const (
	addrTransport = 0x0001
	addrDrive     = 0x0100
	addrIE        = 0x0300
	addrSlot      = 0x0400
)

// Library is a virtual tape library: one media changer, its drives and
// the tapes. Create it with Open; serve Targets with an iscsi.Server; call
// Close at the end. Its methods are safe for concurrent use.
type Library struct {
	cfg   Config
	log   *slog.Logger
	codec *codec

	changer *Changer
	drives  []*Drive

	mu     sync.Mutex
	st     libState
	etag   string
	closed bool

	usageMu sync.Mutex
	usage   map[string]uint64 // bytes used, reported by drives
}

// libState is the persistent library state (library.json).
type libState struct {
	Version  int                  `json:"version"`
	Tapes    map[string]*TapeInfo `json:"tapes"`
	Barcodes map[string]time.Time `json:"barcodes"` // every barcode ever issued
	Counters map[string]uint64    `json:"counters"` // next number per prefix
	Auto     *AutoCreateRule      `json:"auto_create,omitempty"`
	Audit    []AuditEvent         `json:"audit,omitempty"`
}

// maxAudit bounds the audit trail kept in the state object.
const maxAudit = 1000

// Tape statuses.
const (
	StatusAvailable = "available" // in the library (slot, I/E slot or drive)
	StatusExported  = "exported"  // outside the library, data in place
	StatusArchived  = "archived"  // moved to its pool
	StatusRetrieved = "retrieved" // back in the library from a pool, read-only
)

// TapeInfo describes one virtual tape.
type TapeInfo struct {
	Barcode string `json:"barcode"`
	// Size is the native capacity in bytes.
	Size int64  `json:"size"`
	Pool string `json:"pool"`
	WORM bool   `json:"worm,omitempty"`
	// Status is one of the Status constants.
	Status string `json:"status"`
	// Element is the changer element address holding the tape (0 when
	// outside the library); Location says the same in words ("slot 12",
	// "drive 1", "ie 1", "shelf", "archive").
	Element  uint16 `json:"element,omitempty"`
	Location string `json:"location,omitempty"`
	// Source is the slot the tape came from when it is in a drive.
	Source   uint16 `json:"source,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Used is the number of record bytes written (as of the last unload).
	Used        int64     `json:"used"`
	Created     time.Time `json:"created"`
	Archived    time.Time `json:"archived,omitzero"`
	RetainUntil time.Time `json:"retain_until,omitzero"`
	// RetentionMode is the pool's retention mode when the tape was
	// archived.
	RetentionMode string `json:"retention_mode,omitempty"`
	// DataPrefix is the key prefix of the tape's index and segments.
	DataPrefix string `json:"data_prefix"`
}

// AutoCreateRule keeps at least MinAvailable empty, writable tapes in the
// library by creating tapes with the other fields.
type AutoCreateRule struct {
	MinAvailable  int    `json:"min_available"`
	BarcodePrefix string `json:"barcode_prefix"`
	Size          int64  `json:"size"`
	Pool          string `json:"pool"`
	WORM          bool   `json:"worm,omitempty"`
}

// AuditEvent is one entry of the library's audit trail.
type AuditEvent struct {
	Time    time.Time `json:"time"`
	Action  string    `json:"action"`
	Barcode string    `json:"barcode"`
	Detail  string    `json:"detail,omitempty"`
}

// Open opens (or creates) the library stored under cfg.Prefix in
// cfg.Store. Tapes that were in drives are loaded again.
func Open(ctx context.Context, cfg Config) (*Library, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c, err := newCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	l := &Library{cfg: cfg, log: cfg.Logger.With("component", "vtl", "gateway", cfg.Gateway), codec: c, usage: map[string]uint64{}}
	if err := l.loadState(ctx); err != nil {
		c.close()
		return nil, err
	}
	l.changer = newChanger(l)
	for i := 1; i <= cfg.Drives; i++ {
		l.drives = append(l.drives, newDrive(l, i))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.sortedTapesLocked() {
		if k, i := l.elementKind(t.Element); k == elemDrive {
			if err := l.drives[i].insert(ctx, l.cartridge(t)); err != nil {
				l.log.Warn("reloading tape into drive failed", "barcode", t.Barcode, "drive", i+1, "err", err)
			}
		}
	}
	if err := l.autoCreateLocked(ctx); err != nil {
		l.log.Warn("automatic tape creation failed", "err", err)
	}
	return l, nil
}

func (cfg *Config) defaults() error {
	if cfg.Store == nil {
		return fmt.Errorf("%w: no object store", ErrInvalid)
	}
	if cfg.Gateway == "" {
		return fmt.Errorf("%w: no gateway name", ErrInvalid)
	}
	for _, r := range cfg.Gateway {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("%w: gateway name %q", ErrInvalid, cfg.Gateway)
		}
	}
	if cfg.ChangerModel == "" {
		cfg.ChangerModel = ModelAWS
	}
	if _, ok := changerIdentity(cfg.ChangerModel); !ok {
		return fmt.Errorf("%w: changer model %q", ErrInvalid, cfg.ChangerModel)
	}
	def := func(v *int, d, lo, hi int, what string) error {
		if *v == 0 {
			*v = d
		}
		if *v < lo || *v > hi {
			return fmt.Errorf("%w: %s %d not in [%d, %d]", ErrInvalid, what, *v, lo, hi)
		}
		return nil
	}
	for _, e := range []error{
		def(&cfg.Drives, 10, 1, 64, "drives"),
		def(&cfg.Slots, 1600, 1, 0xf000, "slots"),
		def(&cfg.IESlots, 10, 1, 0x100, "import/export slots"),
		def(&cfg.MaxTapes, 1500, 1, 1<<20, "max tapes"),
		def(&cfg.MaxBlockSize, 1<<20, 512, maxRecord, "max block size"),
		def(&cfg.SegmentSize, 64<<20, 1<<20, maxSegment, "segment size"),
		def(&cfg.UploadConcurrency, 2, 1, 64, "upload concurrency"),
		def(&cfg.ReadAhead, 2, 1, 64, "read-ahead"),
	} {
		if e != nil {
			return e
		}
	}
	if cfg.SegmentSize < cfg.MaxBlockSize {
		cfg.SegmentSize = cfg.MaxBlockSize
	}
	if cfg.chunkSegs == 0 {
		cfg.chunkSegs = defaultChunkSegs
	}
	if cfg.MinTapeSize == 0 {
		cfg.MinTapeSize = 100 << 30
	}
	if cfg.MaxTapeSize == 0 {
		cfg.MaxTapeSize = 15 << 40
	}
	pools := map[string]Pool{
		PoolDefault:     {},
		PoolArchive:     {StorageClass: "GLACIER"},
		PoolDeepArchive: {StorageClass: "DEEP_ARCHIVE"},
	}
	for n, p := range cfg.Pools {
		switch p.RetentionMode {
		case "", RetentionGovernance, RetentionCompliance:
		default:
			return fmt.Errorf("%w: pool %s: retention mode %q", ErrInvalid, n, p.RetentionMode)
		}
		if p.RetentionDays < 0 || (p.RetentionMode != "" && p.RetentionDays == 0) {
			return fmt.Errorf("%w: pool %s: retention days %d", ErrInvalid, n, p.RetentionDays)
		}
		pools[n] = p
	}
	for n, p := range pools {
		if p.Store == nil {
			p.Store = cfg.Store
		}
		if p.Prefix == "" {
			p.Prefix = cfg.Prefix + "archive/" + n + "/"
		}
		pools[n] = p
	}
	cfg.Pools = pools
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}

// failpoint runs the configured failpoint hook.
func (l *Library) failpoint(name string) error {
	if l.cfg.Failpoint == nil {
		return nil
	}
	return l.cfg.Failpoint(name)
}

func (l *Library) stateKey() string { return l.cfg.Prefix + "library.json" }

func (l *Library) loadState(ctx context.Context) error {
	rc, info, err := l.cfg.Store.Get(ctx, l.stateKey(), objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		l.st = libState{Version: 1, Tapes: map[string]*TapeInfo{}, Barcodes: map[string]time.Time{}, Counters: map[string]uint64{}}
		return nil
	}
	if err != nil {
		return fmt.Errorf("vtl: load library state: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("vtl: load library state: %w", err)
	}
	var st libState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("vtl: decode library state: %w", err)
	}
	if st.Tapes == nil {
		st.Tapes = map[string]*TapeInfo{}
	}
	if st.Barcodes == nil {
		st.Barcodes = map[string]time.Time{}
	}
	if st.Counters == nil {
		st.Counters = map[string]uint64{}
	}
	l.st, l.etag = st, info.ETag
	return nil
}

// saveLocked writes the state object, conditional on the ETag last seen.
func (l *Library) saveLocked(ctx context.Context) error {
	l.mergeUsageLocked()
	if err := l.failpoint("vtl/state-save"); err != nil {
		return fmt.Errorf("vtl: save library state: %w", err)
	}
	b, err := json.MarshalIndent(&l.st, "", " ")
	if err != nil {
		return fmt.Errorf("vtl: encode library state: %w", err)
	}
	opts := objstore.PutOptions{ContentType: "application/json", IfMatch: l.etag, IfNoneMatch: l.etag == ""}
	info, err := l.cfg.Store.Put(ctx, l.stateKey(), bytes.NewReader(b), int64(len(b)), opts)
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("vtl: save library state: %w", err)
	}
	l.etag = info.ETag
	return nil
}

// noteUsage records the bytes used on a tape (called by drives at unload,
// without the library lock).
func (l *Library) noteUsage(barcode string, used uint64) {
	l.usageMu.Lock()
	l.usage[barcode] = used
	l.usageMu.Unlock()
}

func (l *Library) mergeUsageLocked() {
	l.usageMu.Lock()
	defer l.usageMu.Unlock()
	for bc, u := range l.usage {
		if t := l.st.Tapes[bc]; t != nil {
			t.Used = int64(u)
		}
	}
	clear(l.usage)
}

func (l *Library) auditLocked(action, barcode, detail string) {
	ev := AuditEvent{Time: l.cfg.Now().UTC(), Action: action, Barcode: barcode, Detail: detail}
	l.st.Audit = append(l.st.Audit, ev)
	if len(l.st.Audit) > maxAudit {
		l.st.Audit = append(l.st.Audit[:0], l.st.Audit[len(l.st.Audit)-maxAudit:]...)
	}
	l.log.Info("audit", "action", action, "barcode", barcode, "detail", detail)
}

// serialBase is the common part of the device serial numbers.
func (l *Library) serialBase() string {
	return fmt.Sprintf("%08X", crc32.ChecksumIEEE([]byte(l.cfg.Gateway)))
}

// Changer returns the media changer.
func (l *Library) Changer() *Changer { return l.changer }

// Drives returns the tape drives, in drive number order.
func (l *Library) Drives() []*Drive { return append([]*Drive(nil), l.drives...) }

// ChangerIQN and DriveIQN are the iSCSI target names of the devices.
func (l *Library) ChangerIQN() string {
	return "iqn.2026-11.io.sluicegw:" + l.cfg.Gateway + "-mediachanger"
}

// DriveIQN returns the target name of drive n (1-based).
func (l *Library) DriveIQN(n int) string {
	return fmt.Sprintf("iqn.2026-11.io.sluicegw:%s-tapedrive-%02d", l.cfg.Gateway, n)
}

// Targets returns one iSCSI target per device (LUN 0 each): the changer
// first, then the drives. Add them to an iscsi.Server.
func (l *Library) Targets() []iscsi.Target {
	out := []iscsi.Target{{Name: l.ChangerIQN(), Alias: l.cfg.Gateway + " media changer", LUNs: map[uint64]scsi.LogicalUnit{0: l.changer}}}
	for _, d := range l.drives {
		out = append(out, iscsi.Target{Name: l.DriveIQN(d.num), Alias: fmt.Sprintf("%s tape drive %d", l.cfg.Gateway, d.num), LUNs: map[uint64]scsi.LogicalUnit{0: d}})
	}
	return out
}

// AutoCreateRule returns the automatic tape creation rule, or nil.
func (l *Library) AutoCreateRule() *AutoCreateRule {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Auto == nil {
		return nil
	}
	r := *l.st.Auto
	return &r
}

// Pools returns the pool definitions by name.
func (l *Library) Pools() map[string]Pool {
	out := make(map[string]Pool, len(l.cfg.Pools))
	for n, p := range l.cfg.Pools {
		out[n] = p
	}
	return out
}

// Close unloads every drive (committing what was written) and saves the
// state. The library must not be used afterwards.
func (l *Library) Close(ctx context.Context) error {
	var errs []error
	for _, d := range l.drives {
		if err := d.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drive %d: %w", d.num, err))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		if err := l.saveLocked(ctx); err != nil {
			errs = append(errs, err)
		}
		l.codec.close()
	}
	return errors.Join(errs...)
}

// element kinds
const (
	elemNone = iota
	elemTransport
	elemSlot
	elemIE
	elemDrive
)

// elementKind classifies an element address and returns its 0-based index
// within its kind.
func (l *Library) elementKind(a uint16) (int, int) {
	switch {
	case a == addrTransport:
		return elemTransport, 0
	case a >= addrDrive && int(a) < addrDrive+l.cfg.Drives:
		return elemDrive, int(a) - addrDrive
	case a >= addrIE && int(a) < addrIE+l.cfg.IESlots:
		return elemIE, int(a) - addrIE
	case a >= addrSlot && int(a) < addrSlot+l.cfg.Slots:
		return elemSlot, int(a) - addrSlot
	}
	return elemNone, 0
}

// occupantLocked returns the tape at element a, or nil.
func (l *Library) occupantsLocked() map[uint16]*TapeInfo {
	m := make(map[uint16]*TapeInfo, len(l.st.Tapes))
	for _, t := range l.st.Tapes {
		if t.Element != 0 {
			m[t.Element] = t
		}
	}
	return m
}

// reserveHomeSlots marks in occ the slots tapes now in drives came from,
// so that new or returning tapes do not take them.
func (l *Library) reserveHomeSlots(occ map[uint16]*TapeInfo) {
	for _, t := range l.st.Tapes {
		if k, _ := l.elementKind(t.Element); k == elemDrive && t.Source != 0 && occ[t.Source] == nil {
			occ[t.Source] = t
		}
	}
}

// freeLocked returns the first free element of a kind.
func (l *Library) freeLocked(kind int) (uint16, bool) {
	occ := l.occupantsLocked()
	l.reserveHomeSlots(occ)
	base, n := addrSlot, l.cfg.Slots
	if kind == elemIE {
		base, n = addrIE, l.cfg.IESlots
	}
	for i := 0; i < n; i++ {
		if occ[uint16(base+i)] == nil {
			return uint16(base + i), true
		}
	}
	return 0, false
}

func (l *Library) sortedTapesLocked() []*TapeInfo {
	out := make([]*TapeInfo, 0, len(l.st.Tapes))
	for _, t := range l.st.Tapes {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Barcode < out[j].Barcode })
	return out
}

// cartridge builds the drive's view of a tape.
func (l *Library) cartridge(t *TapeInfo) *cartridge {
	capacity := uint64(t.Size)
	store := l.cfg.Store
	if t.Status == StatusArchived || t.Status == StatusRetrieved {
		store = l.cfg.Pools[t.Pool].Store
	}
	return &cartridge{
		barcode: t.Barcode, readOnly: t.ReadOnly, worm: t.WORM,
		capacity: capacity, ew: min(capacity/32, 2<<30), store: store, prefix: t.DataPrefix,
	}
}

// location describes an element address in words.
func (l *Library) location(t *TapeInfo) string {
	if t.Element == 0 {
		if t.Status == StatusArchived {
			return "archive"
		}
		return "shelf"
	}
	k, i := l.elementKind(t.Element)
	switch k {
	case elemSlot:
		return fmt.Sprintf("slot %d", i+1)
	case elemIE:
		return fmt.Sprintf("ie %d", i+1)
	case elemDrive:
		return fmt.Sprintf("drive %d", i+1)
	}
	return fmt.Sprintf("element %#x", t.Element)
}
