package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/api"
)

func newTapeCommand(g *globalOptions) *cobra.Command {
	tp := &cobra.Command{Use: "tape", Aliases: []string{"tapes"}, Short: "Virtual tapes of the tape gateway (iSCSI VTL)"}
	var co struct {
		prefix, size, pool string
		count              int
		worm               bool
	}
	create := &cobra.Command{
		Use:   "create --barcode-prefix TST --count 5 --size 100GiB [--pool default|archive|deep-archive] [--worm]",
		Short: "Create tapes in free library slots",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := parseBytes(co.size)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var out api.TapeList
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/tapes", api.CreateTapes{BarcodePrefix: co.prefix, Count: co.count, SizeBytes: size, Pool: co.pool, WORM: co.worm}, &out); err != nil {
				return err
			}
			return g.printTapes(out.Tapes, false)
		},
	}
	create.Flags().StringVar(&co.prefix, "barcode-prefix", "", "1 to 4 upper-case letters")
	create.Flags().IntVar(&co.count, "count", 1, "number of tapes")
	create.Flags().StringVar(&co.size, "size", "100GiB", "tape capacity, 100GiB to 15TiB")
	create.Flags().StringVar(&co.pool, "pool", "default", "pool the tape archives to: default, archive or deep-archive")
	create.Flags().BoolVar(&co.worm, "worm", false, "write once, read many")
	var del struct {
		bypass bool
		reason string
	}
	deleteCmd := &cobra.Command{
		Use:   "delete BARCODE [--bypass-governance --reason R]",
		Short: "Delete a tape and its data (barcodes are never reused)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if del.bypass {
				q.Set("bypass_governance", "true")
				q.Set("reason", del.reason)
			}
			if err := c.Do(cmd.Context(), http.MethodDelete, "/v1/tapes/"+url.PathEscape(args[0])+"?"+q.Encode(), nil, nil); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(map[string]string{"deleted": args[0]})
			}
			_, err = fmt.Fprintf(g.stdout, "deleted tape %s\n", args[0])
			return err
		},
	}
	deleteCmd.Flags().BoolVar(&del.bypass, "bypass-governance", false, "admin: delete despite a governance retention lock (audited)")
	deleteCmd.Flags().StringVar(&del.reason, "reason", "", "why (recorded in the audit trail)")
	tp.AddCommand(create, deleteCmd,
		&cobra.Command{
			Use: "list", Short: "List tapes", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				var out api.TapeList
				if err := c.Do(cmd.Context(), http.MethodGet, "/v1/tapes", nil, &out); err != nil {
					return err
				}
				return g.printTapes(out.Tapes, false)
			},
		},
		&cobra.Command{
			Use: "show BARCODE", Short: "Show one tape", Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				var t api.Tape
				if err := c.Do(cmd.Context(), http.MethodGet, "/v1/tapes/"+url.PathEscape(args[0]), nil, &t); err != nil {
					return err
				}
				return g.printTapes([]api.Tape{t}, true)
			},
		},
		&cobra.Command{
			Use: "library", Short: "Show the library's iSCSI targets and auto-create rule", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				var lib api.TapeLibrary
				if err := c.Do(cmd.Context(), http.MethodGet, "/v1/tape-library", nil, &lib); err != nil {
					return err
				}
				if g.output == "json" {
					return g.printJSON(lib)
				}
				rows := [][]string{{"MODEL", lib.Model}, {"MEDIA CHANGER", lib.ChangerIQN}}
				for i, d := range lib.DriveIQNs {
					rows = append(rows, []string{fmt.Sprintf("DRIVE %d", i+1), d})
				}
				if a := lib.AutoCreate; a != nil {
					rows = append(rows, []string{"AUTO-CREATE", fmt.Sprintf("keep %d available (%s, %s, pool %s)", a.MinAvailable, a.BarcodePrefix, humanize.IBytes(uint64(a.SizeBytes)), a.Pool)})
				}
				return g.table(rows)
			},
		},
	)
	for _, a := range []struct{ name, short string }{
		{"import", "Move an exported tape into an import/export slot"},
		{"export", "Take a tape out of the library (data stays in place)"},
		{"archive", "Move a tape out of the library into its pool's storage class"},
		{"retrieve", "Bring an archived tape back into a slot, read-only"},
	} {
		action := a.name
		tp.AddCommand(&cobra.Command{
			Use: action + " BARCODE", Short: a.short, Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				stop := g.progress(action + " " + args[0])
				var t api.Tape
				err = c.Do(cmd.Context(), http.MethodPost, "/v1/tapes/"+url.PathEscape(args[0])+"/"+action, nil, &t)
				stop()
				if err != nil {
					return err
				}
				return g.printTapes([]api.Tape{t}, true)
			},
		})
	}
	var ac struct {
		min          int
		prefix, size string
		pool         string
	}
	auto := &cobra.Command{
		Use:   "auto-create --min N --barcode-prefix P [--size 100GiB] [--pool default] (--min 0 turns it off)",
		Short: "Keep at least N empty tapes in the library",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := parseBytes(ac.size)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var lib api.TapeLibrary
			if err := c.Do(cmd.Context(), http.MethodPut, "/v1/tape-library/auto-create", api.TapeAutoCreate{MinAvailable: ac.min, BarcodePrefix: ac.prefix, SizeBytes: size, Pool: ac.pool}, &lib); err != nil {
				return err
			}
			return g.printJSON(lib)
		},
	}
	auto.Flags().IntVar(&ac.min, "min", 0, "tapes to keep available (0: off)")
	auto.Flags().StringVar(&ac.prefix, "barcode-prefix", "", "barcode prefix of created tapes")
	auto.Flags().StringVar(&ac.size, "size", "100GiB", "capacity of created tapes")
	auto.Flags().StringVar(&ac.pool, "pool", "default", "pool of created tapes")
	tp.AddCommand(auto)
	return tp
}

func (g *globalOptions) printTapes(ts []api.Tape, detail bool) error {
	if g.output == "json" {
		if detail && len(ts) == 1 {
			return g.printJSON(ts[0])
		}
		return g.printJSON(api.TapeList{Tapes: ts})
	}
	rows := [][]string{{"BARCODE", "STATUS", "LOCATION", "SIZE", "USED", "POOL", "FLAGS", "CREATED"}}
	for _, t := range ts {
		var flags []string
		if t.WORM {
			flags = append(flags, "worm")
		}
		if t.ReadOnly {
			flags = append(flags, "read-only")
		}
		if t.RetainUntil != nil {
			flags = append(flags, "locked until "+t.RetainUntil.Format(time.DateOnly))
		}
		rows = append(rows, []string{t.Barcode, t.Status, t.Location, humanize.IBytes(uint64(t.SizeBytes)), humanize.IBytes(uint64(t.UsedBytes)),
			t.Pool, strings.Join(flags, ","), t.Created.Format(time.RFC3339)})
	}
	return g.table(rows)
}
