package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluicegw/sluice/control/client"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	endpoint string
	token    string
	dataDir  string
	output   string
	timeout  time.Duration
	cacert   string

	stdout, stderr io.Writer
}

// AddFlags registers the global flags.
func (o *globalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", "", "control API URL (default: SLUICE_ENDPOINT, the data directory's control.json, or "+client.DefaultEndpoint+")")
	fs.StringVar(&o.token, "token", "", "API token (default: SLUICE_TOKEN or the data directory's admin.token)")
	fs.StringVar(&o.dataDir, "data", "./sluice-data", "data directory of a local sluiced, to find its endpoint and admin token")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "request timeout")
	fs.StringVar(&o.cacert, "cacert", "", "PEM certificate(s) to trust for an https endpoint (default: the data directory's self-signed one)")
}

func (o *globalOptions) validate() error {
	if o.output != "table" && o.output != "json" {
		return &usageError{fmt.Errorf("--output %q: want table or json", o.output)}
	}
	return nil
}

// client builds an API client from the options.
func (o *globalOptions) client() (*client.Client, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	opts, err := client.Resolve(client.Options{Endpoint: o.endpoint, Token: o.token, DataDir: o.dataDir, Timeout: o.timeout, CACertFile: o.cacert})
	if err != nil {
		return nil, err
	}
	return client.New(opts), nil
}

// printJSON writes v as indented JSON.
func (o *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows of cells aligned in columns.
func (o *globalOptions) table(rows [][]string) error {
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "sluicectl",
		Short:         "Manage a Sluice storage gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.AddFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newStatusCommand(g), newGatewayCommand(g), newVolumeCommand(g), newSnapshotCommand(g), newGCCommand(g), newShareCommand(g), newTapeCommand(g), newTokenCommand(g), newAuditCommand(g), newMetricsCommand(g), newAlarmCommand(g), newVersionCommand(g))
	return root
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// removeCommand builds a "delete"-style command that calls remove with the
// one argument and reports what it did ("deleted volume v1").
func removeCommand(g *globalOptions, use, short, verb, what string, remove func(ctx context.Context, c *client.Client, arg string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := remove(cmd.Context(), c, args[0]); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(map[string]string{verb: args[0]})
			}
			_, err = fmt.Fprintf(g.stdout, "%s %s %s\n", verb, what, args[0])
			return err
		},
	}
}
