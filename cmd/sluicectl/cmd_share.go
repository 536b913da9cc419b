package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/client"
)

func newShareCommand(g *globalOptions) *cobra.Command {
	sh := &cobra.Command{Use: "share", Aliases: []string{"shares"}, Short: "NFS file shares whose files are S3 objects"}
	var req api.CreateShare
	create := &cobra.Command{
		Use:   "create NAME [--bucket B] [--prefix P] [--allow CIDR]... [--squash root|all|none] [--read-only]",
		Short: "Create a share, exported as /NAME",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			c, err := g.client()
			if err != nil {
				return err
			}
			s, err := c.CreateShare(cmd.Context(), req)
			if err != nil {
				return err
			}
			return g.printShares([]api.Share{s}, true)
		},
	}
	f := create.Flags()
	f.StringVar(&req.Bucket, "bucket", "", "bucket (default: the gateway's)")
	f.StringVar(&req.Prefix, "prefix", "", "key prefix inside the bucket, e.g. team/")
	f.StringArrayVar(&req.AllowedClients, "allow", nil, "client network allowed to mount (CIDR; repeat; default loopback only)")
	f.StringVar(&req.Squash, "squash", "root", "identity squash: root, all or none")
	f.Uint32Var(&req.AnonUID, "anon-uid", 65534, "uid of squashed users")
	f.Uint32Var(&req.AnonGID, "anon-gid", 65534, "gid of squashed users")
	f.BoolVar(&req.ReadOnly, "read-only", false, "refuse every change")
	var rr api.RefreshShare
	refresh := &cobra.Command{
		Use:   "refresh NAME [--path P] [--recursive]",
		Short: "Forget cached metadata so objects changed directly in the bucket show at once",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RefreshShare(cmd.Context(), args[0], rr); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(map[string]string{"refreshed": args[0]})
			}
			_, err = fmt.Fprintf(g.stdout, "refreshed share %s\n", args[0])
			return err
		},
	}
	refresh.Flags().StringVar(&rr.Path, "path", "", "directory or file inside the share (default: all)")
	refresh.Flags().BoolVar(&rr.Recursive, "recursive", false, "also everything below the path")
	sh.AddCommand(create, refresh,
		&cobra.Command{
			Use: "list", Short: "List shares", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				ss, err := c.ListShares(cmd.Context())
				if err != nil {
					return err
				}
				return g.printShares(ss, false)
			},
		},
		&cobra.Command{
			Use: "show NAME", Short: "Show one share", Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				s, err := c.GetShare(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return g.printShares([]api.Share{s}, true)
			},
		},
		removeCommand(g, "delete NAME", "Stop exporting a share (its objects stay in the bucket)", "deleted", "share", func(ctx context.Context, c *client.Client, name string) error {
			return c.DeleteShare(ctx, name)
		}),
	)
	return sh
}

func (g *globalOptions) printShares(ss []api.Share, detail bool) error {
	if g.output == "json" {
		if detail && len(ss) == 1 {
			return g.printJSON(ss[0])
		}
		return g.printJSON(api.ShareList{Shares: ss})
	}
	if detail && len(ss) == 1 {
		s := ss[0]
		return g.table([][]string{
			{"NAME", s.Name}, {"EXPORT", s.ExportPath}, {"BUCKET", s.Bucket}, {"PREFIX", s.Prefix},
			{"CLIENTS", strings.Join(s.AllowedClients, ", ")}, {"SQUASH", fmt.Sprintf("%s (anon %d:%d)", s.Squash, s.AnonUID, s.AnonGID)},
			{"READ ONLY", strconv.FormatBool(s.ReadOnly)}, {"MOUNTS", strconv.Itoa(s.Mounts)}, {"CREATED", s.Created.Format(time.RFC3339)},
		})
	}
	rows := [][]string{{"NAME", "EXPORT", "BUCKET", "PREFIX", "SQUASH", "RO", "MOUNTS"}}
	for _, s := range ss {
		rows = append(rows, []string{s.Name, s.ExportPath, s.Bucket, s.Prefix, s.Squash, strconv.FormatBool(s.ReadOnly), strconv.Itoa(s.Mounts)})
	}
	return g.table(rows)
}
