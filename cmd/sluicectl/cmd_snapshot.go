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

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
)

func newSnapshotCommand(g *globalOptions) *cobra.Command {
	sn := &cobra.Command{Use: "snapshot", Aliases: []string{"snapshots", "snap"}, Short: "Point-in-time volume snapshots in the object store"}
	var desc string
	create := &cobra.Command{
		Use:   "create VOLUME [--description D]",
		Short: "Take a snapshot now (returns when it is completed)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			stop := g.progress(fmt.Sprintf("snapshot of %s", args[0]))
			s, err := c.CreateSnapshot(cmd.Context(), args[0], api.CreateSnapshot{Description: desc})
			stop()
			if err != nil {
				return err
			}
			return g.printSnapshots([]api.Snapshot{s}, true)
		},
	}
	create.Flags().StringVar(&desc, "description", "", "free text stored with the snapshot")
	var restoreTo, restoreMode string
	restore := &cobra.Command{
		Use:   "restore ID --volume NEW",
		Short: "Create a new volume with the snapshot's content",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if restoreTo == "" {
				return &usageError{fmt.Errorf("--volume is required")}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			stop := g.progress(fmt.Sprintf("restore of %s to %s", args[0], restoreTo))
			v, err := c.RestoreSnapshot(cmd.Context(), args[0], api.RestoreSnapshot{Volume: restoreTo, Mode: restoreMode})
			stop()
			if err != nil {
				return err
			}
			return g.printVolume(v)
		},
	}
	restore.Flags().StringVar(&restoreTo, "volume", "", "name of the new volume")
	restore.Flags().StringVar(&restoreMode, "mode", "stored", "stored (full restore) or cached (instant, blocks fetched on first read)")
	sn.AddCommand(create, restore,
		&cobra.Command{
			Use: "list [VOLUME]", Short: "List snapshots", Args: cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				vol := ""
				if len(args) == 1 {
					vol = args[0]
				}
				ss, err := c.ListSnapshots(cmd.Context(), vol)
				if err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(api.SnapshotList{Snapshots: ss})
				}
				return g.printSnapshots(ss, false)
			},
		},
		&cobra.Command{
			Use: "show ID", Short: "Show one snapshot", Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				s, err := c.GetSnapshot(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return g.printSnapshots([]api.Snapshot{s}, true)
			},
		},
		removeCommand(g, "delete ID", "Delete a snapshot (its unshared chunks go at the next GC)", "deleted", "snapshot", func(ctx context.Context, c *client.Client, id string) error {
			return c.DeleteSnapshot(ctx, id)
		}),
		&cobra.Command{
			Use: "verify ID", Short: "Re-read and re-hash every chunk of a snapshot", Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				stop := g.progress("verifying " + args[0])
				r, err := c.VerifySnapshot(cmd.Context(), args[0])
				stop()
				if err != nil {
					return err
				}
				if g.output == "json" {
					if err := g.printJSON(r); err != nil {
						return err
					}
				} else if r.OK {
					fmt.Fprintf(g.stdout, "OK: %d chunks verified\n", r.Chunks)
				} else {
					fmt.Fprintf(g.stdout, "FAILED: %d missing, %d corrupt chunks\n", len(r.Missing), len(r.Corrupt))
				}
				if !r.OK {
					return fmt.Errorf("snapshot %s is damaged", args[0])
				}
				return nil
			},
		},
	)
	return sn
}

// progress shows a spinner with the elapsed time on stderr while a long
// call runs, when stderr is a terminal; it returns the function that ends it.
func (g *globalOptions) progress(what string) func() {
	f, ok := g.stderr.(*os.File)
	if !ok || g.output == "json" {
		return func() {}
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		spin := `|/-\`
		for i := 0; ; i++ {
			select {
			case <-done:
				fmt.Fprintf(f, "\r\033[K")
				return
			case <-time.After(200 * time.Millisecond):
				fmt.Fprintf(f, "\r%c %s (%s)", spin[i%4], what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

func (g *globalOptions) printSnapshots(ss []api.Snapshot, detail bool) error {
	if g.output == "json" {
		if len(ss) == 1 && detail {
			return g.printJSON(ss[0])
		}
		return g.printJSON(api.SnapshotList{Snapshots: ss})
	}
	if detail && len(ss) == 1 {
		s := ss[0]
		rows := [][]string{
			{"ID", s.ID}, {"VOLUME", s.Volume}, {"STATUS", s.Status}, {"CREATED", s.Created.Format(time.RFC3339)},
			{"SIZE", humanize.IBytes(uint64(s.SizeBytes))}, {"LOGICAL", humanize.IBytes(uint64(s.LogicalBytes))},
			{"STORED (NEW)", humanize.IBytes(uint64(s.StoredBytes))}, {"REFERENCED", humanize.IBytes(uint64(s.ReferencedBytes))},
			{"CHUNKS UPLOADED", strconv.FormatInt(s.ChunksUploaded, 10)}, {"CHUNK SIZE", humanize.IBytes(uint64(s.ChunkSize))},
			{"CODEC", s.Codec}, {"PARENT", s.Parent}, {"DESCRIPTION", s.Description},
		}
		if s.Error != "" {
			rows = append(rows, []string{"ERROR", s.Error})
		}
		return g.table(rows)
	}
	rows := [][]string{{"ID", "VOLUME", "STATUS", "CREATED", "LOGICAL", "STORED", "DESCRIPTION"}}
	for _, s := range ss {
		rows = append(rows, []string{s.ID, s.Volume, s.Status, s.Created.Format(time.RFC3339),
			humanize.IBytes(uint64(s.LogicalBytes)), humanize.IBytes(uint64(s.StoredBytes)), s.Description})
	}
	return g.table(rows)
}

// scheduleOptions are the flags of volume schedule.
type scheduleOptions struct {
	every     time.Duration
	startHour int
	keep      int
	keepDays  int
	off       bool
}

func newScheduleCommand(g *globalOptions) *cobra.Command {
	var o scheduleOptions
	cmd := &cobra.Command{
		Use:   "schedule VOLUME [--every 6h] [--start-hour 0] [--keep 7] [--keep-days 0] [--off]",
		Short: "Show or set a volume's snapshot schedule (default every 24h, keep 7)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSchedule(cmd.Context(), g, args[0], o, cmd.Flags().NFlag() > 0)
		},
	}
	cmd.Flags().DurationVar(&o.every, "every", 24*time.Hour, "interval, whole hours from 1h to 24h")
	cmd.Flags().IntVar(&o.startHour, "start-hour", 0, "first snapshot hour of the day (UTC)")
	cmd.Flags().IntVar(&o.keep, "keep", 7, "keep the last N scheduled snapshots")
	cmd.Flags().IntVar(&o.keepDays, "keep-days", 0, "also keep scheduled snapshots younger than D days")
	cmd.Flags().BoolVar(&o.off, "off", false, "turn the schedule off")
	return cmd
}

func runSchedule(ctx context.Context, g *globalOptions, volume string, o scheduleOptions, set bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	var s api.Schedule
	if set {
		if o.every%time.Hour != 0 {
			return &usageError{fmt.Errorf("--every %s: whole hours from 1h to 24h", o.every)}
		}
		s, err = c.SetSchedule(ctx, volume, api.Schedule{Enabled: !o.off, IntervalHours: int(o.every / time.Hour),
			StartHour: o.startHour, KeepLast: o.keep, KeepDays: o.keepDays})
	} else {
		s, err = c.GetSchedule(ctx, volume)
	}
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(s)
	}
	if !s.Enabled {
		_, err = fmt.Fprintf(g.stdout, "no snapshot schedule for %s\n", volume)
		return err
	}
	rows := [][]string{
		{"EVERY", fmt.Sprintf("%dh from %02d:00 UTC", s.IntervalHours, s.StartHour)},
		{"KEEP", fmt.Sprintf("last %d, and %d days", s.KeepLast, s.KeepDays)},
	}
	if s.Next != nil {
		rows = append(rows, []string{"NEXT", s.Next.Format(time.RFC3339)})
	}
	if s.LastRun != nil {
		rows = append(rows, []string{"LAST RUN", strings.TrimSpace(s.LastRun.Format(time.RFC3339) + " " + s.LastSnapshot + " " + s.LastError)})
	}
	return g.table(rows)
}

func newGCCommand(g *globalOptions) *cobra.Command {
	gc := &cobra.Command{Use: "gc", Short: "Garbage collection of snapshot chunks"}
	var dry bool
	run := &cobra.Command{
		Use: "run [--dry-run]", Short: "Delete chunks no snapshot references (runs daily by itself)", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.RunGC(cmd.Context(), dry)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(r)
			}
			if r.Deferred {
				_, err = fmt.Fprintln(g.stdout, "deferred: a snapshot is being written; try again later")
				return err
			}
			verb := "deleted"
			if dry {
				verb = "would delete"
			}
			_, err = fmt.Fprintf(g.stdout, "%s %d of %d chunks (%s); %d live, %d too young\n", verb, r.Deleted, r.Chunks,
				humanize.IBytes(uint64(r.DeletedBytes)), r.LiveChunks, r.Young)
			if err == nil && r.Packs > 0 {
				_, err = fmt.Fprintf(g.stdout, "packs: %d, %d rewritten, %d deleted\n", r.Packs, r.PacksRewritten, r.PacksDeleted)
			}
			return err
		},
	}
	run.Flags().BoolVar(&dry, "dry-run", false, "only count")
	gc.AddCommand(run)
	return gc
}
