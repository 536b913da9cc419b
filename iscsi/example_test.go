package iscsi_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

// Example shows how a daemon serves a volume: one target with one disk,
// CHAP and an initiator allow-list, an audit hook, and a graceful
// shutdown.
func Example() {
	disk, err := scsi.NewDisk(scsitest.NewMemDevice(64<<20), scsi.DiskOptions{})
	if err != nil {
		panic(err)
	}
	srv := iscsi.NewServer(iscsi.Config{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "iscsi"),
		QueueDepth: 64,
		OnLogin:    func(ev iscsi.LoginEvent) { /* append to the audit trail */ },
	})
	err = srv.AddTarget(iscsi.Target{
		Name:              "iqn.2026-11.io.sluicegw:vol1",
		LUNs:              map[uint64]scsi.LogicalUnit{0: disk},
		CHAP:              &iscsi.CHAPConfig{User: "host1", Secret: iscsi.Secret("a-long-secret")},
		AllowedInitiators: []string{"iqn.1993-08.org.debian:01:host1"},
	})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		panic(err)
	}
	// Output:
}
