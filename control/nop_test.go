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
