package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/client"
	"github.com/sluicegw/sluice/control/monitor"
)

func newMetricsCommand(g *globalOptions) *cobra.Command {
	m := &cobra.Command{Use: "metrics", Short: "Query the gateway's built-in metric history"}
	var labels []string
	var since string
	var rate bool
	query := &cobra.Command{
		Use:   "query NAME",
		Short: "Show a metric's recent values (e.g. sluice_volume_write_bytes_total --rate)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMetricsQuery(cmd.Context(), g, args[0], labels, since, rate)
		},
	}
	query.Flags().StringArrayVar(&labels, "label", nil, "label filter key=value (repeat)")
	query.Flags().StringVar(&since, "since", "1h", "RFC 3339 time or a duration ago")
	query.Flags().BoolVar(&rate, "rate", false, "per-second rate of a counter")
	names := &cobra.Command{
		Use: "names", Short: "List the recorded metric names", Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var out map[string][]string
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/metrics/names", nil, &out); err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(out)
			}
			_, err = fmt.Fprintln(g.stdout, strings.Join(out["names"], "\n"))
			return err
		},
	}
	m.AddCommand(query, names)
	return m
}

func runMetricsQuery(ctx context.Context, g *globalOptions, name string, labels []string, since string, rate bool) error {
	q := url.Values{"name": {name}, "label": labels}
	t, err := parseWhen(since)
	if err != nil {
		return err
	}
	if t != "" {
		q.Set("since", t)
	}
	if rate {
		q.Set("rate", "true")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	var res struct {
		Series []monitor.Series `json:"series"`
	}
	if err := c.MetricsQuery(ctx, q, &res); err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(res)
	}
	rows := [][]string{{"TIME", "VALUE", "LABELS"}}
	for _, s := range res.Series {
		keys := make([]string, 0, len(s.Labels))
		for k, v := range s.Labels {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		for _, p := range s.Points {
			rows = append(rows, []string{p.Time.Format(time.RFC3339), strconv.FormatFloat(p.Value, 'g', 6, 64), strings.Join(keys, ",")})
		}
	}
	return g.table(rows)
}

func newAlarmCommand(g *globalOptions) *cobra.Command {
	al := &cobra.Command{Use: "alarm", Aliases: []string{"alarms"}, Short: "Threshold alarms on gateway metrics"}
	var r monitor.Rule
	var labels []string
	create := &cobra.Command{
		Use:   "create NAME --metric M --comparison '>' --threshold N [--periods 3]",
		Short: "Create an alarm",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Name = args[0]
			r.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return &usageError{fmt.Errorf("--label %q: want key=value", l)}
				}
				r.Labels[k] = v
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var out monitor.Alarm
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/alarms", r, &out); err != nil {
				return err
			}
			return g.printAlarms([]monitor.Alarm{out})
		},
	}
	f := create.Flags()
	f.StringVar(&r.Metric, "metric", "", "metric name (sluicectl metrics names)")
	f.StringArrayVar(&labels, "label", nil, "label filter key=value (repeat)")
	f.StringVar(&r.Statistic, "statistic", "avg", "avg, min, max, sum or last per period")
	f.BoolVar(&r.Rate, "rate", false, "evaluate a counter's per-second rate")
	f.StringVar(&r.Comparison, "comparison", ">", ">, >=, < or <=")
	f.Float64Var(&r.Threshold, "threshold", 0, "threshold")
	f.IntVar(&r.Periods, "periods", 1, "consecutive periods that must breach")
	f.IntVar(&r.PeriodSeconds, "period", 0, "period length in seconds (default: the sampling interval)")
	f.StringVar(&r.Description, "description", "", "what the alarm means")
	al.AddCommand(create,
		&cobra.Command{
			Use: "list", Short: "List alarms and their states", Args: exactArgs(0),
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				var out map[string][]monitor.Alarm
				if err := c.Do(cmd.Context(), http.MethodGet, "/v1/alarms", nil, &out); err != nil {
					return err
				}
				return g.printAlarms(out["alarms"])
			},
		},
		removeCommand(g, "delete NAME", "Delete an alarm", "deleted", "alarm", func(ctx context.Context, c *client.Client, name string) error {
			return c.Do(ctx, http.MethodDelete, "/v1/alarms/"+url.PathEscape(name), nil, nil)
		}),
	)
	return al
}

func (g *globalOptions) printAlarms(as []monitor.Alarm) error {
	if g.output == "json" {
		return g.printJSON(map[string][]monitor.Alarm{"alarms": as})
	}
	rows := [][]string{{"NAME", "STATE", "SINCE", "CONDITION", "REASON"}}
	for _, a := range as {
		cond := fmt.Sprintf("%s(%s) %s %g for %d", a.Rule.Statistic, a.Rule.Metric, a.Rule.Comparison, a.Rule.Threshold, a.Rule.Periods)
		rows = append(rows, []string{a.Rule.Name, a.State.State, a.State.Since.Format(time.RFC3339), cond, a.State.Reason})
	}
	return g.table(rows)
}
