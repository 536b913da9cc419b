package appliance

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

// TestPersistentReservationsSurviveRestart registers a key with APTPL
// (Activate Persist Through Power Loss) over iSCSI, restarts the daemon
// and reads the key back, as Windows failover clusters expect.
func TestPersistentReservationsSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	d, c, stop := runDaemon(t, cfg)
	ctx := context.Background()
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "cluster", SizeBytes: 8 << 20}); err != nil {
		t.Fatal(err)
	}
	login := func(addr string) *iscsitest.Client {
		t.Helper()
		cl, err := iscsitest.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Login(ctx, iscsitest.Options{TargetName: IQNPrefix + "cluster"}); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	// Clear the power-on unit attention first.
	cl := login(d.ISCSIAddr())
	cl.Command(ctx, 0, []byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
	// PERSISTENT RESERVE OUT, REGISTER, key 0x1234, APTPL.
	params := make([]byte, 24)
	binary.BigEndian.PutUint64(params[8:], 0x1234)
	params[20] = 0x01 // APTPL
	cdb := []byte{0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0}
	resp, err := cl.Command(ctx, 0, cdb, params, 0)
	if err != nil || resp.Status != 0 {
		t.Fatalf("REGISTER: %+v %v", resp, err)
	}
	cl.Close()
	stop()

	d2, _ := startDaemon(t, cfg)
	cl = login(d2.ISCSIAddr())
	defer cl.Close()
	cl.Command(ctx, 0, []byte{0x00, 0, 0, 0, 0, 0}, nil, 0)
	// PERSISTENT RESERVE IN, READ KEYS.
	resp, err = cl.Command(ctx, 0, []byte{0x5e, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0}, nil, 256)
	if err != nil || resp.Status != 0 || len(resp.Data) < 16 {
		t.Fatalf("READ KEYS: %+v %v", resp, err)
	}
	if n := binary.BigEndian.Uint32(resp.Data[4:]); n != 8 || binary.BigEndian.Uint64(resp.Data[8:]) != 0x1234 {
		t.Fatalf("keys after restart: %x", resp.Data)
	}
}
