package control

import (
	"context"

	"github.com/sluicegw/sluice/control/api"
)

// nopVolumes is a Volumes that has none, for route-table tests.
type nopVolumes struct{}

func (nopVolumes) CreateVolume(context.Context, api.CreateVolume) (api.Volume, error) {
	return api.Volume{}, NotFound("none")
}
func (nopVolumes) ListVolumes(context.Context) ([]api.Volume, error) { return nil, nil }
func (nopVolumes) GetVolume(context.Context, string) (api.Volume, error) {
	return api.Volume{}, NotFound("none")
}
func (nopVolumes) DeleteVolume(context.Context, string) error { return NotFound("none") }

// nopSnapshots has no snapshots.
type nopSnapshots struct{}

func (nopSnapshots) CreateSnapshot(context.Context, string, api.CreateSnapshot) (api.Snapshot, error) {
	return api.Snapshot{}, NotFound("none")
}
func (nopSnapshots) ListSnapshots(context.Context, string) ([]api.Snapshot, error) { return nil, nil }
func (nopSnapshots) GetSnapshot(context.Context, string) (api.Snapshot, error) {
	return api.Snapshot{}, NotFound("none")
}
func (nopSnapshots) DeleteSnapshot(context.Context, string) error { return NotFound("none") }
func (nopSnapshots) VerifySnapshot(context.Context, string) (api.VerifyResult, error) {
	return api.VerifyResult{}, NotFound("none")
}
func (nopSnapshots) RestoreSnapshot(context.Context, string, api.RestoreSnapshot) (api.Volume, error) {
	return api.Volume{}, NotFound("none")
}
func (nopSnapshots) GetSchedule(context.Context, string) (api.Schedule, error) {
	return api.Schedule{}, NotFound("none")
}
func (nopSnapshots) SetSchedule(context.Context, string, api.Schedule) (api.Schedule, error) {
	return api.Schedule{}, NotFound("none")
}
func (nopSnapshots) RunGC(context.Context, bool) (api.GCResult, error) { return api.GCResult{}, nil }

// nopShares has no shares.
type nopShares struct{}

func (nopShares) CreateShare(context.Context, api.CreateShare) (api.Share, error) {
	return api.Share{}, NotFound("none")
}
func (nopShares) ListShares(context.Context) ([]api.Share, error) { return nil, nil }
func (nopShares) GetShare(context.Context, string) (api.Share, error) {
	return api.Share{}, NotFound("none")
}
func (nopShares) DeleteShare(context.Context, string) error { return NotFound("none") }
func (nopShares) RefreshShare(context.Context, string, api.RefreshShare) error {
	return NotFound("none")
}

// nopSettings keeps a schedule in memory.
type nopSettings struct{}

func (nopSettings) BandwidthSchedule(context.Context) (api.BandwidthSchedule, error) {
	return api.BandwidthSchedule{Active: -1}, nil
}
func (nopSettings) SetBandwidthSchedule(_ context.Context, s api.BandwidthSchedule) (api.BandwidthSchedule, error) {
	return s, nil
}

func (nopVolumes) ResizeVolume(context.Context, string, int64) (api.Volume, error) {
	return api.Volume{}, NotFound("none")
}
