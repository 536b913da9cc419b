package main

import (
	"context"
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the gateway's health",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), g)
		},
	}
}

func runStatus(ctx context.Context, g *globalOptions) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	h, err := c.Health(ctx)
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(h)
	}
	store := h.ObjectStore.Kind
	if h.ObjectStore.Endpoint != "" {
		store += " " + h.ObjectStore.Endpoint + "/" + h.ObjectStore.Bucket
	}
	reach := "reachable"
	if !h.ObjectStore.Reachable {
		reach = "UNREACHABLE: " + h.ObjectStore.Error
	}
	return g.table([][]string{
		{"STATUS", h.Status},
		{"VERSION", h.Version},
		{"ENDPOINT", c.Endpoint()},
		{"UPTIME", (time.Duration(h.UptimeSeconds) * time.Second).String()},
		{"OBJECT STORE", store},
		{"STORE STATE", reach},
	})
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the daemon's version",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.Health(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(map[string]string{"version": h.Version})
			}
			_, err = fmt.Fprintln(g.stdout, h.Version)
			return err
		},
	}
}

// bandwidthOptions are the flags of gateway bandwidth.
type bandwidthOptions struct {
	upload, download string
}

func newGatewayCommand(g *globalOptions) *cobra.Command {
	gw := &cobra.Command{Use: "gateway", Short: "Show and configure the gateway"}
	gw.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Show the gateway's configuration",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.Gateway(cmd.Context())
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(info)
			}
			return g.table([][]string{
				{"VERSION", info.Version},
				{"STARTED", info.Started.Format(time.RFC3339)},
				{"DATA DIR", info.DataDir},
				{"CONTROL", info.ControlAddr},
				{"ISCSI", info.ISCSIAddr},
				{"NFS", info.NFSAddr},
				{"OBJECT STORE", info.ObjectStore},
				{"UPLOAD LIMIT", rate(info.Bandwidth.UploadBytesPerSec)},
				{"DOWNLOAD LIMIT", rate(info.Bandwidth.DownloadBytesPerSec)},
			})
		},
	})
	var bo bandwidthOptions
	bw := &cobra.Command{
		Use:   "bandwidth",
		Short: "Show or set the object-store bandwidth limits (e.g. --upload 100MiB, 0 = unlimited)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBandwidth(cmd.Context(), g, cmd.Flags().Changed("upload"), cmd.Flags().Changed("download"), bo)
		},
	}
	bw.Flags().StringVar(&bo.upload, "upload", "", "upload limit in bytes per second (e.g. 50MiB; 0 = unlimited)")
	bw.Flags().StringVar(&bo.download, "download", "", "download limit in bytes per second (e.g. 200MiB; 0 = unlimited)")
	gw.AddCommand(bw, newBandwidthScheduleCommand(g), newMaintenanceCommand(g))
	return gw
}

func rate(bps int64) string {
	if bps == 0 {
		return "unlimited"
	}
	return humanize.IBytes(uint64(bps)) + "/s"
}

func runBandwidth(ctx context.Context, g *globalOptions, setUp, setDown bool, o bandwidthOptions) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	b, err := c.Bandwidth(ctx)
	if err != nil {
		return err
	}
	if setUp || setDown {
		if setUp {
			if b.UploadBytesPerSec, err = parseBytes(o.upload); err != nil {
				return err
			}
		}
		if setDown {
			if b.DownloadBytesPerSec, err = parseBytes(o.download); err != nil {
				return err
			}
		}
		if b, err = c.SetBandwidth(ctx, b); err != nil {
			return err
		}
	}
	if g.output == "json" {
		return g.printJSON(b)
	}
	return g.table([][]string{{"UPLOAD", rate(b.UploadBytesPerSec)}, {"DOWNLOAD", rate(b.DownloadBytesPerSec)}})
}

// parseBytes reads a size such as 1GiB, 500MB or 1048576.
func parseBytes(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<62 {
		return 0, &usageError{fmt.Errorf("size %q: want a number of bytes such as 1GiB or 500MB", s)}
	}
	return int64(n), nil
}
