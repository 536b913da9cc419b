package appliance

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/blockcache"
	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/snapshot"
)

var _ control.Snapshots = (*volumeManager)(nil)

// snapshotAPI converts a catalogue entry to its API form.
func snapshotAPI(in snapshot.Info) api.Snapshot {
	return api.Snapshot{
		ID: in.ID, Volume: in.Volume, Parent: in.Parent, Status: string(in.Status), Error: in.Error,
		Created: in.Created, Completed: in.Completed, SizeBytes: in.Size, ChunkSize: in.BlockSize,
		Codec: in.Codec.String(), Description: in.Description, Tags: in.Tags,
		LogicalBytes: in.LogicalBytes, StoredBytes: in.StoredBytes, ReferencedBytes: in.ReferencedBytes,
		ChunksUploaded: in.ChunksUploaded,
	}
}

// snapshotErr maps catalogue errors to API errors.
func snapshotErr(id string, err error) error {
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		return control.NotFound("no snapshot %q", id)
	case errors.Is(err, snapshot.ErrNotCompleted):
		return control.Conflict("snapshot %s is not completed", id)
	case errors.Is(err, snapshot.ErrInvalid):
		return control.BadRequest(err)
	case errors.Is(err, blockcache.ErrSnapshotBusy):
		return control.Conflict("a snapshot of this volume is already running")
	case errors.Is(err, snapshot.ErrBusy):
		return control.Conflict("garbage collection is already running")
	}
	return err
}

func (m *volumeManager) volume(name string) (*openVolume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.volumes[name]
	if !ok {
		return nil, control.NotFound("no volume %q", name)
	}
	return v, nil
}

// snapshotFunc binds a volume's snapshot to the scheduler.
func (m *volumeManager) snapshotFunc(name string) snapshot.SnapshotFunc {
	return func(ctx context.Context, description string, tags map[string]string) (snapshot.Info, error) {
		v, err := m.volume(name)
		if err != nil {
			return snapshot.Info{}, err
		}
		return m.takeSnapshot(ctx, v, blockcache.SnapshotRequest{Description: description, Tags: tags})
	}
}

// takeSnapshot snapshots a volume and publishes the outcome.
func (m *volumeManager) takeSnapshot(ctx context.Context, v *openVolume, req blockcache.SnapshotRequest) (snapshot.Info, error) {
	start := time.Now()
	in, err := v.snap.Snapshot(ctx, m.catalog, req)
	if err != nil {
		m.log.Error("snapshot failed", "volume", v.rec.Name, "err", err)
		if m.onEvent != nil {
			m.onEvent(events.Event{Type: events.SnapshotFailed, Resource: "volumes/" + v.rec.Name, Attrs: map[string]string{"error": err.Error()}})
		}
		return in, err
	}
	m.log.Info("snapshot completed", "volume", v.rec.Name, "snapshot", in.ID, "logical_bytes", in.LogicalBytes,
		"stored_bytes", in.StoredBytes, "duration", time.Since(start))
	if m.onEvent != nil {
		m.onEvent(events.Event{Type: events.SnapshotCompleted, Resource: "snapshots/" + in.ID,
			Attrs: map[string]string{"volume": v.rec.Name, "stored_bytes": fmt.Sprint(in.StoredBytes)}})
	}
	return in, nil
}

// CreateSnapshot implements control.Snapshots. It returns when the
// snapshot is completed (or failed).
func (m *volumeManager) CreateSnapshot(ctx context.Context, volume string, req api.CreateSnapshot) (api.Snapshot, error) {
	v, err := m.volume(volume)
	if err != nil {
		return api.Snapshot{}, err
	}
	in, err := m.takeSnapshot(ctx, v, blockcache.SnapshotRequest{Description: req.Description, Tags: req.Tags})
	if err != nil {
		return api.Snapshot{}, snapshotErr("", err)
	}
	return snapshotAPI(in), nil
}

// ListSnapshots implements control.Snapshots.
func (m *volumeManager) ListSnapshots(ctx context.Context, volume string) ([]api.Snapshot, error) {
	ins, err := m.catalog.List(ctx, snapshot.ListFilter{Volume: volume})
	if err != nil {
		return nil, err
	}
	out := make([]api.Snapshot, 0, len(ins))
	for _, in := range ins {
		out = append(out, snapshotAPI(in))
	}
	return out, nil
}

// GetSnapshot implements control.Snapshots.
func (m *volumeManager) GetSnapshot(ctx context.Context, id string) (api.Snapshot, error) {
	in, err := m.catalog.Get(ctx, id)
	if err != nil {
		return api.Snapshot{}, snapshotErr(id, err)
	}
	return snapshotAPI(in), nil
}

// DeleteSnapshot implements control.Snapshots.
func (m *volumeManager) DeleteSnapshot(ctx context.Context, id string) error {
	return snapshotErr(id, m.catalog.Delete(ctx, id))
}

// VerifySnapshot implements control.Snapshots.
func (m *volumeManager) VerifySnapshot(ctx context.Context, id string) (api.VerifyResult, error) {
	res, err := m.catalog.Verify(ctx, id)
	if err != nil {
		return api.VerifyResult{}, snapshotErr(id, err)
	}
	return api.VerifyResult{ID: res.ID, OK: res.OK, Chunks: res.Chunks, Missing: res.Missing, Corrupt: res.Corrupt}, nil
}

// RestoreSnapshot implements control.Snapshots: a new stored volume with
// the snapshot's content.
func (m *volumeManager) RestoreSnapshot(ctx context.Context, id string, req api.RestoreSnapshot) (api.Volume, error) {
	in, err := m.catalog.Get(ctx, id)
	if err != nil {
		return api.Volume{}, snapshotErr(id, err)
	}
	if in.Status != snapshot.StatusCompleted {
		return api.Volume{}, control.Conflict("snapshot %s is %s", id, in.Status)
	}
	return m.CreateVolume(ctx, api.CreateVolume{
		Name: req.Volume, Mode: req.Mode, SizeBytes: in.Size, ChunkSize: in.BlockSize, Codec: in.Codec.String(),
		FromSnapshot: id, CHAPUser: req.CHAPUser, CHAPSecret: req.CHAPSecret, AllowedInitiators: req.AllowedInitiators,
	})
}

// GetSchedule implements control.Snapshots.
func (m *volumeManager) GetSchedule(ctx context.Context, volume string) (api.Schedule, error) {
	v, err := m.volume(volume)
	if err != nil {
		return api.Schedule{}, err
	}
	if v.rec.Schedule == nil {
		return api.Schedule{}, nil
	}
	p := *v.rec.Schedule
	out := api.Schedule{Enabled: true, IntervalHours: p.IntervalHours, StartHour: p.StartHour, KeepLast: p.KeepLast, KeepDays: p.KeepDays}
	for _, st := range m.sched.Status() {
		if st.Volume != volume {
			continue
		}
		next := st.NextRun
		out.Next = &next
		if !st.LastRun.At.IsZero() {
			at := st.LastRun.At
			out.LastRun, out.LastSnapshot, out.LastError = &at, st.LastRun.Snapshot, st.LastRun.Error
		}
	}
	return out, nil
}

// SetSchedule implements control.Snapshots; Enabled false turns it off.
func (m *volumeManager) SetSchedule(ctx context.Context, volume string, s api.Schedule) (api.Schedule, error) {
	v, err := m.volume(volume)
	if err != nil {
		return api.Schedule{}, err
	}
	var p *snapshot.Policy
	if s.Enabled {
		pol := snapshot.Policy{IntervalHours: s.IntervalHours, StartHour: s.StartHour, KeepLast: s.KeepLast, KeepDays: s.KeepDays}
		if pol.IntervalHours == 0 {
			pol.IntervalHours = 24
		}
		if err := pol.Validate(); err != nil {
			return api.Schedule{}, control.BadRequest(err)
		}
		p = &pol
	}
	if err := m.updateRecord(v, func(rec *volumeRecord) { rec.Schedule = p }); err != nil {
		return api.Schedule{}, err
	}
	if p == nil {
		m.sched.Remove(volume)
	} else if err := m.sched.Set(volume, *p, m.snapshotFunc(volume)); err != nil {
		return api.Schedule{}, control.BadRequest(err)
	}
	return m.GetSchedule(ctx, volume)
}

// RunGC implements control.Snapshots.
func (m *volumeManager) RunGC(ctx context.Context, dryRun bool) (api.GCResult, error) {
	opts := snapshot.GCOptions{DryRun: dryRun}
	if m.cache != nil {
		// Live block maps of cached volumes keep their chunks.
		opts.Roots = m.cache.Roots
	}
	res, err := m.catalog.GC(ctx, opts)
	if err != nil {
		return api.GCResult{}, snapshotErr("", err)
	}
	return api.GCResult{Deferred: res.Deferred, Snapshots: res.Snapshots, LiveChunks: res.LiveChunks, Chunks: res.Chunks,
		Deleted: res.Deleted, DeletedBytes: res.DeletedBytes, Young: res.Young,
		Packs: res.Packs, PacksRewritten: res.PacksRewritten, PacksDeleted: res.PacksDeleted}, nil
}
