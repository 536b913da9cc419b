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

	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/state"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/scsi"
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
}

// storedSecrets are the CHAP secrets as the state database keeps them. A
// volumeRecord is never logged or returned; the API type has no secret
// fields, and the iSCSI target gets them as redacting iscsi.Secret values.
type storedSecrets struct {
	CHAP   string `json:"chap,omitempty"`
	Mutual string `json:"mutual,omitempty"`
}

// volumeDevice is the storage behind a volume's disk: thin-provisioned
// (UNMAP, GET LBA STATUS) and closable.
type volumeDevice interface {
	scsi.BlockDevice
	scsi.Unmapper
	scsi.MappingReporter
	Close() error
}

// openVolume is a volume being served.
type openVolume struct {
	rec   volumeRecord
	dev   volumeDevice
	disk  *scsi.Disk
	stats *volumeStats
}

// volumeManager creates, serves and deletes volumes. It implements
// control.Volumes.
type volumeManager struct {
	log     *slog.Logger
	state   *state.DB
	dir     string
	target  *iscsi.Server
	mu      sync.Mutex
	volumes map[string]*openVolume
}

var _ control.Volumes = (*volumeManager)(nil)

func newVolumeManager(log *slog.Logger, db *state.DB, dataDir string, target *iscsi.Server) (*volumeManager, error) {
	m := &volumeManager{log: log, state: db, dir: filepath.Join(dataDir, volumesDir), target: target, volumes: map[string]*openVolume{}}
	if err := os.MkdirAll(m.dir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	recs, err := state.List[volumeRecord](db, volumesCollection)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	for _, rec := range recs {
		if err := m.serve(rec, false); err != nil {
			m.close()
			return nil, fmt.Errorf("%w: volume %s: %w", ErrDataDir, rec.Name, err)
		}
	}
	return m, nil
}

var volumeName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (m *volumeManager) dataPath(name string) string { return filepath.Join(m.dir, name+".img") }

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
	if req.Mode != api.ModeStored {
		return bad("mode %q: only %q volumes are available in this version", req.Mode, api.ModeStored)
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
	}, nil
}

// serve opens a volume's device and adds its target.
func (m *volumeManager) serve(rec volumeRecord, create bool) error {
	raw, err := openStoredDevice(m.dataPath(rec.Name), rec.SizeBytes, create)
	if err != nil {
		return err
	}
	stats := &volumeStats{}
	dev := countingDevice{volumeDevice: raw, st: stats}
	var id [16]byte
	_, _ = hex.Decode(id[:], []byte(rec.ID))
	disk, err := scsi.NewDisk(dev, scsi.DiskOptions{
		BlockSize: rec.BlockSize, ID: id, Product: "VOLUME",
		Logger: m.log.With("volume", rec.Name),
	})
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
	m.mu.Lock()
	m.volumes[rec.Name] = &openVolume{rec: rec, dev: dev, disk: disk, stats: stats}
	m.mu.Unlock()
	return nil
}

func (m *volumeManager) toAPI(rec volumeRecord) api.Volume {
	v := api.Volume{
		Name: rec.Name, Mode: rec.Mode, IQN: IQNPrefix + rec.Name, SizeBytes: rec.SizeBytes,
		BlockSize: rec.BlockSize, Created: rec.Created, CHAPUser: rec.CHAPUser,
		MutualCHAP: rec.MutualUser != "", AllowedInitiators: rec.AllowedInitiators,
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
	if err := m.serve(rec, true); err != nil {
		_ = m.state.Update(func(tx *state.Tx) error { return tx.Delete(volumesCollection, rec.Name) })
		return api.Volume{}, fmt.Errorf("serving volume %s: %w", rec.Name, err)
	}
	m.log.Info("volume created", "volume", rec.Name, "size", rec.SizeBytes, "chap", rec.CHAPUser != "")
	return m.toAPI(rec), nil
}

// ListVolumes implements control.Volumes.
func (m *volumeManager) ListVolumes(ctx context.Context) ([]api.Volume, error) {
	m.mu.Lock()
	recs := make([]volumeRecord, 0, len(m.volumes))
	for _, v := range m.volumes {
		recs = append(recs, v.rec)
	}
	m.mu.Unlock()
	slices.SortFunc(recs, func(a, b volumeRecord) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	out := make([]api.Volume, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.toAPI(r))
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
	return m.toAPI(v.rec), nil
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
	if err := v.dev.Close(); err != nil {
		m.log.Warn("closing volume", "volume", name, "err", err)
	}
	if err := m.state.Update(func(tx *state.Tx) error { return tx.Delete(volumesCollection, name) }); err != nil {
		return err
	}
	if err := os.Remove(m.dataPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
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

// close closes every volume's device.
func (m *volumeManager) close() error {
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
