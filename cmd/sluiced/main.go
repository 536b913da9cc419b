// Command sluiced is the Sluice storage gateway daemon.
//
// It starts with embedded defaults (data in ./sluice-data, the embedded
// object store, every listener on loopback); a YAML config file and flags
// change them, flags winning. Exit codes: 0 after a clean shutdown, 1 for
// other failures, 2 for bad configuration, 3 when a listener cannot be
// opened, 4 when the object store is unreachable, 5 when the data directory
// cannot be used.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/sluicegw/sluice/appliance"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailure  = 1
	exitConfig   = 2
	exitListen   = 3
	exitStore    = 4
	exitDataDir  = 5
	exitUsageErr = exitConfig
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluiced: %v\n", err)
		return exitUsageErr
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := appliance.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "sluiced: %v\n", err)
		return exitCode(err)
	}
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "sluiced: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func exitCode(err error) int {
	switch {
	case errors.Is(err, appliance.ErrConfig):
		return exitConfig
	case errors.Is(err, appliance.ErrListen):
		return exitListen
	case errors.Is(err, appliance.ErrStore):
		return exitStore
	case errors.Is(err, appliance.ErrDataDir):
		return exitDataDir
	}
	return exitFailure
}

// parseConfig applies defaults, then --config, then the flags that were set.
func parseConfig(args []string, stderr io.Writer) (appliance.Config, error) {
	cfg := appliance.DefaultConfig()
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML config file (flags override it)")
	var fl appliance.Config
	fs.StringVar(&fl.DataDir, "data", cfg.DataDir, "data directory")
	fs.StringVar(&fl.ControlAddr, "control-addr", cfg.ControlAddr, "REST API listen address")
	fs.StringVar(&fl.ISCSIAddr, "iscsi-addr", cfg.ISCSIAddr, "iSCSI listen address")
	portals := fs.String("iscsi-portal", "", "comma-separated host:port addresses SendTargets advertises (default: the address the initiator connected to; set behind NAT)")
	fs.StringVar(&fl.NFSAddr, "nfs-addr", cfg.NFSAddr, "NFS and MOUNT listen address")
	fs.StringVar(&fl.NFS.PortmapAddr, "portmap-addr", cfg.NFS.PortmapAddr, `portmapper address: "auto" (port 111 on the NFS host when free) or "off"`)
	fs.StringVar(&fl.S3.Endpoint, "s3-endpoint", "", "S3 endpoint URL (none: the embedded store in the data directory)")
	fs.StringVar(&fl.S3.Bucket, "s3-bucket", "", "S3 bucket (created when missing)")
	fs.StringVar(&fl.S3.Region, "s3-region", "", "S3 region (default: AWS_REGION or discovered)")
	fs.StringVar(&fl.ControlTLS.Mode, "control-tls", "off", "TLS on the control API: off, self-signed (generated under DATA/tls) or files (control_tls.cert_file/key_file in the config file)")
	cacheSize := fs.String("cache-size", "10GiB", "size of the block cache of cached volumes (e.g. 64GiB)")
	fs.StringVar(&fl.Log.Level, "log-level", cfg.Log.Level, "log level: debug, info, warn, error")
	fs.StringVar(&fl.Log.Format, "log-format", cfg.Log.Format, "log format: text or json")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sluiced [flags]\n\nSluice storage gateway daemon. Object-store credentials come from\nAWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a credentials file, never flags.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *configFile != "" {
		if err := appliance.LoadConfigFile(*configFile, &cfg); err != nil {
			return cfg, err
		}
	}
	if cfg.S3.Region == "" {
		cfg.S3.Region = os.Getenv("AWS_REGION")
	}
	var visitErr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "iscsi-portal":
			cfg.ISCSIPortals = strings.Split(*portals, ",")
		case "cache-size":
			n, err := humanize.ParseBytes(*cacheSize)
			if err != nil || n > 1<<50 {
				visitErr = fmt.Errorf("--cache-size %q: want a size such as 64GiB", *cacheSize)
			}
			cfg.CacheSize = int64(n)
		case "data":
			cfg.DataDir = fl.DataDir
		case "control-addr":
			cfg.ControlAddr = fl.ControlAddr
		case "iscsi-addr":
			cfg.ISCSIAddr = fl.ISCSIAddr
		case "nfs-addr":
			cfg.NFSAddr = fl.NFSAddr
		case "portmap-addr":
			cfg.NFS.PortmapAddr = fl.NFS.PortmapAddr
		case "s3-endpoint":
			cfg.S3.Endpoint = fl.S3.Endpoint
		case "s3-bucket":
			cfg.S3.Bucket = fl.S3.Bucket
		case "s3-region":
			cfg.S3.Region = fl.S3.Region
		case "control-tls":
			cfg.ControlTLS.Mode = fl.ControlTLS.Mode
		case "log-level":
			cfg.Log.Level = fl.Log.Level
		case "log-format":
			cfg.Log.Format = fl.Log.Format
		}
	})
	if visitErr != nil {
		return cfg, visitErr
	}
	return cfg, cfg.Validate()
}

func newLogger(c appliance.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
