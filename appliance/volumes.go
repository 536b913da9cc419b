package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/sluicegw/sluice/blockcache"
	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/internal/state"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/snapshot"
)

// IQNPrefix starts the iSCSI name of every volume's target.
const IQNPrefix = "iqn.2026-11.io.sluicegw:"

// volumesCollection holds volume records in the state database.
const volumesCollection = "volumes"

// volumesDir holds stored volumes' data under the data directory.
const volumesDir = "volumes"

// Volume size bounds.
const (
	minVolumeSize = 1 << 20
	maxVolumeSize = 64 << 40
)

// volumeRecord is a volume's configuration in the state database. The CHAP
// secrets are kept because CHAP needs them in the clear; the database file
// is mode 0600 and the secrets never leave the daemon through the API or
// logs.
type volumeRecord struct {
	Name              string        `json:"name"`
	ID                string        `json:"id"`
	Mode              string        `json:"mode"`
	SizeBytes         int64         `json:"size_bytes"`
	BlockSize         int           `json:"block_size"`
	Created           time.Time     `json:"created"`
	CHAPUser          string        `json:"chap_user,omitempty"`
	MutualUser        string        `json:"mutual_chap_user,omitempty"`
	Secrets           storedSecrets `json:"secrets"`
	AllowedInitiators []string      `json:"allowed_initiators,omitempty"`
	ChunkSize         int           `json:"chunk_size"`
	Codec             string        `json:"codec"`
	FromSnapshot      string        `json:"from_snapshot,omitempty"`
	// Schedule is the snapshot schedule; nil when off.
	Schedule *snapshot.Policy `json:"schedule,omitempty"`
}

// storedSecrets are the CHAP secrets as the state database keeps them. A
// volumeRecord is never logged or returned; the API type has no secret
// fields, and the iSCSI target gets them as redacting iscsi.Secret values.
type storedSecrets struct {
	CHAP   string `json:"chap,omitempty"`
	Mutual string `json:"mutual,omitempty"`
}

// reservationsCollection keeps each volume's persistent reservation state.
const reservationsCollection = "reservations"

// prStore saves a volume's persistent reservations in the state database.
type prStore struct {
	db     *state.DB
	volume string
}

// SavePR implements scsi.PRStore.
func (p prStore) SavePR(s scsi.PRState) error {
	return p.db.Update(func(tx *state.Tx) error { return tx.Put(reservationsCollection, p.volume, s) })
}

// volumeDevice is the storage behind a volume's disk: thin-provisioned
// (UNMAP, GET LBA STATUS) and closable.
type volumeDevice interface {
	scsi.BlockDevice
	scsi.Unmapper
	scsi.MappingReporter
	Close() error
}

// snapshotter is what stored and cached volumes share for snapshots.
type snapshotter interface {
	Snapshot(ctx context.Context, cat *snapshot.Catalog, req blockcache.SnapshotRequest) (snapshot.Info, error)
}

// openVolume is a volume being served: a stored or a cached one.
type openVolume struct {
	rec    volumeRecord
	stored *blockcache.StoredVolume
	cached *blockcache.CachedVolume
	snap   snapshotter
	dev    volumeDevice
	disk   *scsi.Disk
	stats  *volumeStats
}

// volumeManager creates, serves and deletes volumes. It implements
// control.Volumes.
type volumeManager struct {
	log     *slog.Logger
	state   *state.DB
	dir     string
	target  *iscsi.Server
	catalog *snapshot.Catalog
	sched   *snapshot.Scheduler
	// cache holds cached volumes' blocks; nil when there is none.
	cache *blockcache.Cache
	// onEvent publishes snapshot outcomes (the event bus).
	onEvent func(events.Event)
	mu      sync.Mutex
	volumes map[string]*openVolume
	// bg tracks background work (resuming snapshots) to wait for at close.
	bg     sync.WaitGroup
	bgCtx  context.Context
	cancel context.CancelFunc
}

var _ control.Volumes = (*volumeManager)(nil)

func newVolumeManager(log *slog.Logger, db *state.DB, dataDir string, target *iscsi.Server, cat *snapshot.Catalog, cache *blockcache.Cache) (*volumeManager, error) {
	m := &volumeManager{log: log, state: db, dir: filepath.Join(dataDir, volumesDir), target: target, catalog: cat, cache: cache, volumes: map[string]*openVolume{}}
	m.bgCtx, m.cancel = context.WithCancel(context.Background())
	m.sched = snapshot.NewScheduler(cat, snapshot.SchedulerOptions{Logger: log.With("component", "snapshot-schedule")})
	if err := os.MkdirAll(m.dir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	recs, err := state.List[volumeRecord](db, volumesCollection)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	for _, rec := range recs {
		if err := m.serve(context.Background(), rec, false); err != nil {
			m.close()
			return nil, fmt.Errorf("%w: volume %s: %w", ErrDataDir, rec.Name, err)
		}
	}
	return m, nil
}

var volumeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (m *volumeManager) dataPath(name string) string { return filepath.Join(m.dir, name) }

// validate checks a create request and builds the record.
func validateVolume(req api.CreateVolume) (volumeRecord, error) {
	bad := func(format string, args ...any) (volumeRecord, error) {
		return volumeRecord{}, control.BadRequest(fmt.Errorf(format, args...))
	}
	if !volumeName.MatchString(req.Name) {
		return bad("volume name %q: use 1-63 lower-case letters, digits and dashes, starting with a letter or digit", req.Name)
	}
	if req.Mode == "" {
		req.Mode = api.ModeStored
	}
	if req.Mode != api.ModeStored && req.Mode != api.ModeCached {
		return bad("mode %q: want %q or %q", req.Mode, api.ModeStored, api.ModeCached)
	}
	if req.BlockSize == 0 {
		req.BlockSize = 512
	}
	if req.BlockSize != 512 && req.BlockSize != 4096 {
		return bad("block size %d: want 512 or 4096", req.BlockSize)
	}
	if req.SizeBytes < minVolumeSize || req.SizeBytes > maxVolumeSize || req.SizeBytes%int64(req.BlockSize) != 0 {
		return bad("size %d: want a multiple of the block size from 1 MiB to 64 TiB", req.SizeBytes)
	}
	if (req.CHAPUser == "") != (req.CHAPSecret == "") {
		return bad("CHAP needs both a user and a secret")
	}
	if req.CHAPSecret != "" && (len(req.CHAPSecret) < 12 || len(req.CHAPSecret) > 255) {
		return bad("CHAP secret must be 12 to 255 bytes (RFC 7143 section 12.1.3 and the Windows initiator require at least 12)")
	}
	if (req.MutualCHAPUser == "") != (req.MutualCHAPSecret == "") {
		return bad("mutual CHAP needs both a user and a secret")
	}
	if req.MutualCHAPUser != "" && req.CHAPUser == "" {
		return bad("mutual CHAP needs one-way CHAP too")
	}
	if req.MutualCHAPSecret != "" && (len(req.MutualCHAPSecret) < 12 || len(req.MutualCHAPSecret) > 255 || req.MutualCHAPSecret == req.CHAPSecret) {
		return bad("mutual CHAP secret must be 12 to 255 bytes and differ from the CHAP secret")
	}
	for _, iqn := range req.AllowedInitiators {
		if len(iqn) < 5 || len(iqn) > 223 {
			return bad("initiator name %q is not an iSCSI name", iqn)
		}
	}
	if req.ChunkSize == 0 {
		req.ChunkSize = snapshot.DefaultBlockSize
	}
	if !snapshot.ValidBlockSize(req.ChunkSize) {
		return bad("chunk size %d: want a power of two from 64 KiB to 4 MiB", req.ChunkSize)
	}
	if req.Codec == "" {
		req.Codec = "zstd"
	}
	if _, err := snapshot.ParseCodec(req.Codec); err != nil {
		return bad("codec %q: want zstd, lz4 or none", req.Codec)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return volumeRecord{}, err
	}
	return volumeRecord{
		Name: req.Name, ID: hex.EncodeToString(id[:]), Mode: req.Mode, SizeBytes: req.SizeBytes,
		BlockSize: req.BlockSize, Created: time.Now().UTC(),
		CHAPUser: req.CHAPUser, MutualUser: req.MutualCHAPUser,
		Secrets:           storedSecrets{CHAP: req.CHAPSecret, Mutual: req.MutualCHAPSecret},
		AllowedInitiators: slices.Clone(req.AllowedInitiators),
		ChunkSize:         req.ChunkSize, Codec: req.Codec, FromSnapshot: req.FromSnapshot,
	}, nil
}

// openStored opens (with create, creates) a volume's stored data.
func (m *volumeManager) openStored(ctx context.Context, rec volumeRecord, create bool) (*blockcache.StoredVolume, error) {
	dir := m.dataPath(rec.Name)
	o := blockcache.Options{Logger: m.log.With("volume", rec.Name)}
	if !create {
		v, err := blockcache.OpenStored(dir, o)
		if !errors.Is(err, blockcache.ErrNotVolume) {
			return v, err
		}
		// The record was committed but the crash came before the volume
		// directory was: create it now.
		m.log.Warn("volume data missing; creating it", "volume", rec.Name)
	}
	codec, _ := snapshot.ParseCodec(rec.Codec)
	cfg := blockcache.StoredConfig{Name: rec.Name, Size: rec.SizeBytes, BlockSize: rec.ChunkSize, Codec: codec}
	if rec.FromSnapshot != "" {
		return blockcache.CreateStoredFromSnapshot(ctx, dir, m.catalog, rec.FromSnapshot, cfg, o)
	}
	return blockcache.CreateStored(dir, cfg, o)
}

// openCached opens (with create, creates) a cached volume.
func (m *volumeManager) openCached(ctx context.Context, rec volumeRecord, create bool) (*blockcache.CachedVolume, error) {
	if m.cache == nil {
		return nil, control.BadRequest(errors.New("cached volumes need a cache: start sluiced with --cache-size"))
	}
	dir := m.dataPath(rec.Name)
	o := blockcache.Options{Logger: m.log.With("volume", rec.Name)}
	if !create {
		v, err := blockcache.OpenCached(dir, m.cache, o)
		if !errors.Is(err, blockcache.ErrNotVolume) {
			return v, err
		}
		m.log.Warn("volume data missing; creating it", "volume", rec.Name)
	}
	codec, _ := snapshot.ParseCodec(rec.Codec)
	cfg := blockcache.CachedConfig{Name: rec.Name, Size: rec.SizeBytes, BlockSize: rec.ChunkSize, Codec: codec}
	if rec.FromSnapshot != "" {
		return blockcache.CreateCachedFromSnapshot(ctx, dir, m.cache, m.catalog, rec.FromSnapshot, cfg, o)
	}
	return blockcache.CreateCached(dir, m.cache, cfg, o)
}

// serve opens a volume's device and adds its target.
func (m *volumeManager) serve(ctx context.Context, rec volumeRecord, create bool) error {
	ov := &openVolume{rec: rec}
	var raw volumeDevice
	if rec.Mode == api.ModeCached {
		cached, err := m.openCached(ctx, rec, create)
		if err != nil {
			return err
		}
		ov.cached, ov.snap, raw = cached, cached, cached
	} else {
		stored, err := m.openStored(ctx, rec, create)
		if err != nil {
			return err
		}
		ov.stored, ov.snap, raw = stored, stored, stored
	}
	stats := &volumeStats{}
	dev := countingDevice{volumeDevice: raw, st: stats}
	var id [16]byte
	_, _ = hex.Decode(id[:], []byte(rec.ID))
	opts := scsi.DiskOptions{
		BlockSize: rec.BlockSize, ID: id, Product: "VOLUME",
		Logger: m.log.With("volume", rec.Name),
		// Persistent reservations registered with APTPL survive restarts
		// (Windows failover clusters rely on them).
		PR: prStore{db: m.state, volume: rec.Name},
	}
	if pr, err := state.Get[scsi.PRState](m.state, reservationsCollection, rec.Name); err == nil {
		opts.InitialPR = &pr
	}
	disk, err := scsi.NewDisk(dev, opts)
	if err != nil {
		dev.Close()
		return err
	}
	t := iscsi.Target{
		Name: IQNPrefix + rec.Name, Alias: rec.Name,
		LUNs:              map[uint64]scsi.LogicalUnit{0: disk},
		AllowedInitiators: rec.AllowedInitiators,
	}
	if rec.CHAPUser != "" {
		t.CHAP = &iscsi.CHAPConfig{
			User: rec.CHAPUser, Secret: iscsi.Secret(rec.Secrets.CHAP),
			MutualUser: rec.MutualUser, MutualSecret: iscsi.Secret(rec.Secrets.Mutual),
		}
	}
	if err := m.target.AddTarget(t); err != nil {
		dev.Close()
		return err
	}
	ov.dev, ov.disk, ov.stats = dev, disk, stats
	m.mu.Lock()
	m.volumes[rec.Name] = ov
	m.mu.Unlock()
	if rec.Schedule != nil {
		if err := m.sched.Set(rec.Name, *rec.Schedule, m.snapshotFunc(rec.Name)); err != nil {
			m.log.Warn("snapshot schedule", "volume", rec.Name, "err", err)
		}
	}
	if ov.stored == nil {
		return nil
	}
	stored := ov.stored
	if in := stored.Info(); in.PendingSnapshot != "" {
		// A snapshot was interrupted (crash, outage): finish it.
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			info, _, err := stored.ResumeSnapshot(m.bgCtx, m.catalog)
			if err != nil {
				m.log.Error("resuming snapshot", "volume", rec.Name, "snapshot", in.PendingSnapshot, "err", err)
				return
			}
			m.log.Info("resumed snapshot", "volume", rec.Name, "snapshot", info.ID, "status", info.Status)
		}()
	}
	return nil
}

func (m *volumeManager) toAPI(ov *openVolume) api.Volume {
	rec := ov.rec
	v := api.Volume{
		Name: rec.Name, Mode: rec.Mode, IQN: IQNPrefix + rec.Name, SizeBytes: rec.SizeBytes,
		BlockSize: rec.BlockSize, Created: rec.Created, CHAPUser: rec.CHAPUser,
		MutualCHAP: rec.MutualUser != "", AllowedInitiators: rec.AllowedInitiators,
		ChunkSize: rec.ChunkSize, Codec: rec.Codec, FromSnapshot: rec.FromSnapshot,
	}
	if ov.stored != nil {
		in := ov.stored.Info()
		v.ChangedBytes = in.ChangedBlocks * int64(in.BlockSize)
		v.LastSnapshot = in.Base
	}
	if ov.cached != nil {
		in := ov.cached.Info()
		v.SizeBytes = in.Size
		v.Cache = &api.VolumeCache{
			CacheHitPercent: in.CacheHitPercent, CachePercentUsed: in.CachePercentUsed,
			CachePercentDirty: in.CachePercentDirty, UploadBufferPercentUsed: in.UploadBufferPercentUsed,
			CloudBytesUploaded: in.CloudBytesUploaded, CloudBytesDownloaded: in.CloudBytesDownloaded,
			DirtyBytes:                        int64(in.DirtyBlocks) * int64(in.BlockSize),
			TimeSinceLastRecoveryPointSeconds: in.TimeSinceLastRecoveryPoint.Seconds(), Degraded: in.Degraded,
		}
	}
	if v.AllowedInitiators == nil {
		v.AllowedInitiators = []string{}
	}
	for _, s := range m.target.Sessions() {
		if s.Target == v.IQN && !s.Discovery {
			v.Sessions++
		}
	}
	return v
}

// CreateVolume implements control.Volumes.
func (m *volumeManager) CreateVolume(ctx context.Context, req api.CreateVolume) (api.Volume, error) {
	rec, err := validateVolume(req)
	if err != nil {
		return api.Volume{}, err
	}
	m.mu.Lock()
	_, exists := m.volumes[rec.Name]
	m.mu.Unlock()
	if exists {
		return api.Volume{}, control.Conflict("volume %s exists", rec.Name)
	}
	// The record is committed first; a crash before the data file exists
	// is repaired at start, which creates the missing file.
	if err := m.state.Update(func(tx *state.Tx) error { return tx.Create(volumesCollection, rec.Name, rec) }); err != nil {
		if errors.Is(err, state.ErrExists) {
			return api.Volume{}, control.Conflict("volume %s exists", rec.Name)
		}
		return api.Volume{}, err
	}
	if err := m.serve(ctx, rec, true); err != nil {
		_ = m.state.Update(func(tx *state.Tx) error { return tx.Delete(volumesCollection, rec.Name) })
		_ = os.RemoveAll(m.dataPath(rec.Name))
		if errors.Is(err, snapshot.ErrNotFound) || errors.Is(err, snapshot.ErrNotCompleted) {
			return api.Volume{}, control.BadRequest(err)
		}
		return api.Volume{}, fmt.Errorf("serving volume %s: %w", rec.Name, err)
	}
	m.log.Info("volume created", "volume", rec.Name, "size", rec.SizeBytes, "chap", rec.CHAPUser != "", "from_snapshot", rec.FromSnapshot)
	return m.GetVolume(ctx, rec.Name)
}

// ListVolumes implements control.Volumes.
func (m *volumeManager) ListVolumes(ctx context.Context) ([]api.Volume, error) {
	vols := sortedValues(&m.mu, m.volumes)
	out := make([]api.Volume, 0, len(vols))
	for _, v := range vols {
		out = append(out, m.toAPI(v))
	}
	return out, nil
}

// GetVolume implements control.Volumes.
func (m *volumeManager) GetVolume(ctx context.Context, name string) (api.Volume, error) {
	m.mu.Lock()
	v, ok := m.volumes[name]
	m.mu.Unlock()
	if !ok {
		return api.Volume{}, control.NotFound("no volume %q", name)
	}
	return m.toAPI(v), nil
}

// DeleteVolume implements control.Volumes: the target goes away (its
// sessions are closed), then the record and the local data.
func (m *volumeManager) DeleteVolume(ctx context.Context, name string) error {
	m.mu.Lock()
	v, ok := m.volumes[name]
	if ok {
		delete(m.volumes, name)
	}
	m.mu.Unlock()
	if !ok {
		return control.NotFound("no volume %q", name)
	}
	if err := m.target.RemoveTarget(IQNPrefix + name); err != nil {
		m.log.Warn("removing target", "volume", name, "err", err)
	}
	m.sched.Remove(name)
	if err := v.dev.Close(); err != nil {
		m.log.Warn("closing volume", "volume", name, "err", err)
	}
	if err := m.state.Update(func(tx *state.Tx) error {
		_ = tx.Delete(reservationsCollection, name)
		return tx.Delete(volumesCollection, name)
	}); err != nil {
		return err
	}
	if v.cached != nil {
		// Its blocks leave the cache; its chunks stay until GC finds them
		// unreferenced.
		if err := blockcache.DeleteCached(m.dataPath(name), m.cache); err != nil {
			m.log.Warn("removing cached volume", "volume", name, "err", err)
		}
	}
	// Snapshots of the volume stay in the catalogue (they can be restored
	// to new volumes); chunks only they reference go at the next GC after
	// they are deleted.
	if err := os.RemoveAll(m.dataPath(name)); err != nil {
		return fmt.Errorf("removing data of volume %s: %w", name, err)
	}
	m.log.Info("volume deleted", "volume", name)
	return nil
}

// flush makes every volume's completed writes durable.
func (m *volumeManager) flush(ctx context.Context) error {
	m.mu.Lock()
	vols := make([]*openVolume, 0, len(m.volumes))
	for _, v := range m.volumes {
		vols = append(vols, v)
	}
	m.mu.Unlock()
	var errs []error
	for _, v := range vols {
		if err := v.dev.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.rec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// close stops background work and closes every volume's device. A
// snapshot cut short stays pending and resumes at the next start.
func (m *volumeManager) close() error {
	m.cancel()
	m.bg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for name, v := range m.volumes {
		if err := v.dev.Close(); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
		}
		delete(m.volumes, name)
	}
	return errors.Join(errs...)
}

// ResizeVolume implements control.Volumes: cached volumes grow; stored
// volumes cannot be resized in this version.
func (m *volumeManager) ResizeVolume(ctx context.Context, name string, size int64) (api.Volume, error) {
	v, err := m.volume(name)
	if err != nil {
		return api.Volume{}, err
	}
	if v.cached == nil {
		return api.Volume{}, control.Conflict("volume %s is a stored volume; only cached volumes can be resized", name)
	}
	if size <= v.cached.Size() || size > maxVolumeSize || size%int64(v.rec.BlockSize) != 0 {
		return api.Volume{}, control.BadRequest(fmt.Errorf("new size %d: larger than %d, a multiple of %d, at most 64 TiB", size, v.cached.Size(), v.rec.BlockSize))
	}
	if err := v.cached.Resize(ctx, size); err != nil {
		return api.Volume{}, err
	}
	if err := m.updateRecord(v, func(rec *volumeRecord) { rec.SizeBytes = size }); err != nil {
		return api.Volume{}, err
	}
	// Initiators learn it from a CAPACITY DATA HAS CHANGED unit attention.
	v.disk.Resize(size)
	return m.GetVolume(ctx, name)
}

// updateRecord changes a volume's stored record and its in-memory copy.
func (m *volumeManager) updateRecord(v *openVolume, change func(*volumeRecord)) error {
	err := m.state.Update(func(tx *state.Tx) error {
		var rec volumeRecord
		if err := tx.Get(volumesCollection, v.rec.Name, &rec); err != nil {
			return err
		}
		change(&rec)
		return tx.Put(volumesCollection, v.rec.Name, rec)
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	change(&v.rec)
	m.mu.Unlock()
	return nil
}
