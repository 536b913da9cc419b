package appliance

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/sluicegw/sluice/control/api"
)

// writeControlFile writes DATA/control.json while the daemon runs, so that
// sluicectl finds the API (even on a random port).
func writeControlFile(dataDir, url string) error {
	raw, err := json.Marshal(api.ControlEndpoint{URL: url, PID: os.Getpid()})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dataDir, api.ControlEndpointFile), raw, 0o644)
}
