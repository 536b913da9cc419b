package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
)

// volumeCreateOptions are the flags of volume create.
type volumeCreateOptions struct {
	mode             string
	size             string
	blockSize        int
	chapUser         string
	chapSecret       string
	chapSecretFile   string
	mutualUser       string
	mutualSecret     string
	mutualSecretFile string
	allow            []string
	chunkSize        string
	codec            string
	fromSnapshot     string
}

// AddFlags registers the flags.
func (o *volumeCreateOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.mode, "mode", api.ModeStored, "stored (data on local disk, snapshots in S3) or cached (data in S3, hot blocks in the local cache)")
	fs.StringVar(&o.size, "size", "", "volume size, e.g. 1GiB (required)")
	fs.IntVar(&o.blockSize, "block-size", 512, "logical block size: 512 or 4096")
	fs.StringVar(&o.chapUser, "chap-user", "", "CHAP user name the initiator must present")
	fs.StringVar(&o.chapSecret, "chap-secret", "", "CHAP secret, 12-255 bytes (visible in ps: prefer --chap-secret-file)")
	fs.StringVar(&o.chapSecretFile, "chap-secret-file", "", "file holding the CHAP secret")
	fs.StringVar(&o.mutualUser, "mutual-chap-user", "", "user name the target presents for mutual CHAP")
	fs.StringVar(&o.mutualSecret, "mutual-chap-secret", "", "secret the target presents for mutual CHAP")
	fs.StringVar(&o.mutualSecretFile, "mutual-chap-secret-file", "", "file holding the mutual CHAP secret")
	fs.StringArrayVar(&o.allow, "allow-initiator", nil, "initiator IQN allowed to log in (repeat; none = any)")
	fs.StringVar(&o.chunkSize, "chunk-size", "1MiB", "snapshot chunk size, 64KiB to 4MiB")
	fs.StringVar(&o.codec, "codec", "zstd", "snapshot compression: zstd, lz4 or none")
	fs.StringVar(&o.fromSnapshot, "from-snapshot", "", "create the volume with this snapshot's content (size comes from it)")
}

func newVolumeCommand(g *globalOptions) *cobra.Command {
	vol := &cobra.Command{Use: "volume", Aliases: []string{"volumes", "vol"}, Short: "Manage iSCSI block volumes"}
	var co volumeCreateOptions
	create := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create a volume (served as iqn.2026-11.io.sluicegw:NAME, LUN 0)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVolumeCreate(cmd.Context(), g, args[0], co)
		},
	}
	co.AddFlags(create.Flags())
	var newSize string
	resize := &cobra.Command{
		Use:   "resize NAME --size SIZE",
		Short: "Grow a cached volume",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseBytes(newSize)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var v api.Volume
			if v, err = c.ResizeVolume(cmd.Context(), args[0], n); err != nil {
				return err
			}
			return g.printVolume(v)
		},
	}
	resize.Flags().StringVar(&newSize, "size", "", "new size, larger than the current one")
	vol.AddCommand(create, resize, newScheduleCommand(g),
		&cobra.Command{
			Use: "list", Short: "List volumes", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error { return runVolumeList(cmd.Context(), g) },
		},
		&cobra.Command{
			Use: "show NAME", Short: "Show one volume", Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return runVolumeShow(cmd.Context(), g, args[0]) },
		},
		removeCommand(g, "delete NAME", "Delete a volume and its local data", "deleted", "volume", func(ctx context.Context, c *client.Client, name string) error {
			return c.DeleteVolume(ctx, name)
		}),
	)
	return vol
}

// secretFrom returns the flag value or the first line of the file.
func secretFrom(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", &usageError{fmt.Errorf("give a secret or a secret file, not both")}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", &usageError{err}
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return strings.TrimSpace(line), nil
}

func runVolumeCreate(ctx context.Context, g *globalOptions, name string, o volumeCreateOptions) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	var size int64
	switch {
	case o.fromSnapshot != "":
		snap, err := c.GetSnapshot(ctx, o.fromSnapshot)
		if err != nil {
			return err
		}
		size = snap.SizeBytes
	case o.size == "":
		return &usageError{fmt.Errorf("--size is required")}
	default:
		if size, err = parseBytes(o.size); err != nil {
			return err
		}
	}
	chunk, err := parseBytes(o.chunkSize)
	if err != nil {
		return err
	}
	req := api.CreateVolume{Name: name, Mode: o.mode, SizeBytes: size, BlockSize: o.blockSize,
		CHAPUser: o.chapUser, MutualCHAPUser: o.mutualUser, AllowedInitiators: o.allow,
		ChunkSize: int(chunk), Codec: o.codec, FromSnapshot: o.fromSnapshot}
	if req.CHAPSecret, err = secretFrom(o.chapSecret, o.chapSecretFile); err != nil {
		return err
	}
	if req.MutualCHAPSecret, err = secretFrom(o.mutualSecret, o.mutualSecretFile); err != nil {
		return err
	}
	v, err := c.CreateVolume(ctx, req)
	if err != nil {
		return err
	}
	return g.printVolume(v)
}

func runVolumeList(ctx context.Context, g *globalOptions) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	vs, err := c.ListVolumes(ctx)
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(api.VolumeList{Volumes: vs})
	}
	rows := [][]string{{"NAME", "MODE", "SIZE", "BLOCK", "CHAP", "SESSIONS", "IQN"}}
	for _, v := range vs {
		rows = append(rows, []string{v.Name, v.Mode, humanize.IBytes(uint64(v.SizeBytes)), strconv.Itoa(v.BlockSize),
			chapText(v), strconv.Itoa(v.Sessions), v.IQN})
	}
	return g.table(rows)
}

func runVolumeShow(ctx context.Context, g *globalOptions, name string) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	v, err := c.GetVolume(ctx, name)
	if err != nil {
		return err
	}
	return g.printVolume(v)
}

func chapText(v api.Volume) string {
	switch {
	case v.CHAPUser == "":
		return "off"
	case v.MutualCHAP:
		return "mutual"
	}
	return "one-way"
}

func (g *globalOptions) printVolume(v api.Volume) error {
	if g.output == "json" {
		return g.printJSON(v)
	}
	allow := "any"
	if len(v.AllowedInitiators) > 0 {
		allow = strings.Join(v.AllowedInitiators, ", ")
	}
	rows := [][]string{
		{"NAME", v.Name},
		{"MODE", v.Mode},
		{"IQN", v.IQN},
		{"LUN", "0"},
		{"SIZE", humanize.IBytes(uint64(v.SizeBytes)) + " (" + strconv.FormatInt(v.SizeBytes, 10) + " bytes)"},
		{"BLOCK SIZE", strconv.Itoa(v.BlockSize)},
		{"CHAP", chapText(v)},
		{"INITIATORS", allow},
		{"SESSIONS", strconv.Itoa(v.Sessions)},
		{"CREATED", v.Created.Format(time.RFC3339)},
		{"SNAPSHOT CHUNKS", humanize.IBytes(uint64(v.ChunkSize)) + " " + v.Codec},
		{"CHANGED SINCE SNAPSHOT", humanize.IBytes(uint64(v.ChangedBytes))},
		{"LAST SNAPSHOT", v.LastSnapshot},
	}
	if c := v.Cache; c != nil {
		rows = append(rows,
			[]string{"CACHE HIT", fmt.Sprintf("%.1f%%", c.CacheHitPercent)},
			[]string{"CACHE USED / DIRTY", fmt.Sprintf("%.1f%% / %.1f%%", c.CachePercentUsed, c.CachePercentDirty)},
			[]string{"UPLOAD BUFFER USED", fmt.Sprintf("%.1f%%", c.UploadBufferPercentUsed)},
			[]string{"NOT YET IN S3", humanize.IBytes(uint64(c.DirtyBytes))},
			[]string{"CLOUD UP / DOWN", humanize.IBytes(uint64(c.CloudBytesUploaded)) + " / " + humanize.IBytes(uint64(c.CloudBytesDownloaded))},
			[]string{"SINCE RECOVERY POINT", fmt.Sprintf("%.0fs", c.TimeSinceLastRecoveryPointSeconds)},
		)
		if c.Degraded {
			rows = append(rows, []string{"STATE", "DEGRADED: object store unreachable"})
		}
	}
	return g.table(rows)
}
