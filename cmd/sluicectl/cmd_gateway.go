package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/api"
)

// parseInterval reads "DAYS START-END UP DOWN", e.g.
// "1-5 09:00-17:00 10MiB 50MiB" or "* 22:00-24:00 0 0" (days 0 = Sunday).
func parseInterval(s string) (api.BandwidthInterval, error) {
	f := strings.Fields(s)
	bad := &usageError{fmt.Errorf("--interval %q: want \"DAYS HH:MM-HH:MM UPLOAD DOWNLOAD\", e.g. \"1-5 09:00-17:00 10MiB 50MiB\"", s)}
	if len(f) != 4 {
		return api.BandwidthInterval{}, bad
	}
	var iv api.BandwidthInterval
	if f[0] != "*" {
		for _, part := range strings.Split(f[0], ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a > b {
				return iv, bad
			}
			for d := a; d <= b; d++ {
				iv.DaysOfWeek = append(iv.DaysOfWeek, d)
			}
		}
	}
	var ok bool
	if iv.Start, iv.End, ok = strings.Cut(f[1], "-"); !ok {
		return iv, bad
	}
	var err error
	if iv.UploadBytesPerSec, err = parseBytes(f[2]); err != nil {
		return iv, err
	}
	if iv.DownloadBytesPerSec, err = parseBytes(f[3]); err != nil {
		return iv, err
	}
	return iv, nil
}

func newBandwidthScheduleCommand(g *globalOptions) *cobra.Command {
	var intervals []string
	var clear bool
	cmd := &cobra.Command{
		Use:   "bandwidth-schedule [--interval \"1-5 09:00-17:00 10MiB 50MiB\"]... [--clear]",
		Short: "Show or set the weekly bandwidth schedule (UTC; intervals replace the base limits)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var bs api.BandwidthSchedule
			if len(intervals) > 0 || clear {
				in := api.BandwidthSchedule{Intervals: []api.BandwidthInterval{}}
				for _, s := range intervals {
					iv, err := parseInterval(s)
					if err != nil {
						return err
					}
					in.Intervals = append(in.Intervals, iv)
				}
				err = c.Do(cmd.Context(), http.MethodPut, "/v1/gateway/bandwidth-schedule", in, &bs)
			} else {
				err = c.Do(cmd.Context(), http.MethodGet, "/v1/gateway/bandwidth-schedule", nil, &bs)
			}
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(bs)
			}
			rows := [][]string{{"", "DAYS", "FROM", "TO", "UPLOAD", "DOWNLOAD"}}
			for i, iv := range bs.Intervals {
				mark := ""
				if i == bs.Active {
					mark = "*"
				}
				days := "every day"
				if len(iv.DaysOfWeek) > 0 {
					days = strings.Trim(strings.Join(strings.Fields(fmt.Sprint(iv.DaysOfWeek)), ","), "[]")
				}
				rows = append(rows, []string{mark, days, iv.Start, iv.End, rate(iv.UploadBytesPerSec), rate(iv.DownloadBytesPerSec)})
			}
			return g.table(rows)
		},
	}
	cmd.Flags().StringArrayVar(&intervals, "interval", nil, `interval "DAYS HH:MM-HH:MM UPLOAD DOWNLOAD" (repeat; days 0=Sunday, e.g. 1-5 or *)`)
	cmd.Flags().BoolVar(&clear, "clear", false, "remove every interval")
	return cmd
}

func newMaintenanceCommand(g *globalOptions) *cobra.Command {
	var mw api.MaintenanceWindow
	cmd := &cobra.Command{
		Use:   "maintenance [--day 0-6 --hour H --minute M]",
		Short: "Show or set the weekly maintenance window (UTC)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var out api.MaintenanceWindow
			if cmd.Flags().NFlag() > 0 && (cmd.Flags().Changed("day") || cmd.Flags().Changed("hour") || cmd.Flags().Changed("minute")) {
				err = c.Do(cmd.Context(), http.MethodPut, "/v1/gateway/maintenance", mw, &out)
			} else {
				err = c.Do(cmd.Context(), http.MethodGet, "/v1/gateway/maintenance", nil, &out)
			}
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(out)
			}
			days := []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
			_, err = fmt.Fprintf(g.stdout, "%s %02d:%02d UTC\n", days[out.DayOfWeek%7], out.Hour, out.Minute)
			return err
		},
	}
	cmd.Flags().IntVar(&mw.DayOfWeek, "day", 0, "day of week, 0 = Sunday")
	cmd.Flags().IntVar(&mw.Hour, "hour", 3, "hour (UTC)")
	cmd.Flags().IntVar(&mw.Minute, "minute", 0, "minute")
	return cmd
}
