// Command iscsitarget serves one file as an iSCSI disk with Sluice's iSCSI
// target. It exists for bench/iscsi.sh and manual testing until the daemon
// wires the target itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/iscsi/scsi"
	"github.com/sluicegw/sluice/iscsi/scsi/scsitest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "iscsitarget:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("listen", "127.0.0.1:3261", "listen address")
	file := flag.String("file", "", "backing file")
	size := flag.Int64("size", 1<<30, "device size in bytes (file is created or extended)")
	name := flag.String("target", "iqn.2026-11.io.sluicegw:v1", "target name")
	user := flag.String("chap-user", "", "CHAP user (optional)")
	secret := flag.String("chap-secret", "", "CHAP secret (optional)")
	qd := flag.Int("queue-depth", 128, "commands per session")
	verbose := flag.Bool("v", false, "debug logging")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file until shutdown")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *file == "" {
		return fmt.Errorf("-file is required")
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	dev, err := scsitest.OpenFileDevice(*file, *size)
	if err != nil {
		return err
	}
	defer dev.Close()
	disk, err := scsi.NewDisk(dev, scsi.DiskOptions{})
	if err != nil {
		return err
	}
	srv := iscsi.NewServer(iscsi.Config{Logger: log, QueueDepth: *qd})
	t := iscsi.Target{Name: *name, LUNs: map[uint64]scsi.LogicalUnit{0: disk}}
	if *user != "" {
		t.CHAP = &iscsi.CHAPConfig{User: *user, Secret: iscsi.Secret(*secret)}
	}
	if err := srv.AddTarget(t); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log.Info("serving", "addr", ln.Addr().String(), "target", *name, "file", *file)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
