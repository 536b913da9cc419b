package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicegw/sluice/control/audit"
)

// auditEventsOptions are the filters of audit events.
type auditEventsOptions struct {
	since, until                     string
	name, identity, resource, catgry string
	limit                            int
	after                            uint64
}

func newAuditCommand(g *globalOptions) *cobra.Command {
	au := &cobra.Command{Use: "audit", Short: "Read and verify the audit trail"}
	var eo auditEventsOptions
	ev := &cobra.Command{
		Use:   "events",
		Short: "List audit records (filters: --since, --until, --name, --identity, --resource)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditEvents(cmd.Context(), g, eo)
		},
	}
	ev.Flags().StringVar(&eo.since, "since", "", "RFC 3339 time or a duration ago (e.g. 24h)")
	ev.Flags().StringVar(&eo.until, "until", "", "RFC 3339 time or a duration ago")
	ev.Flags().StringVar(&eo.name, "name", "", "event name, e.g. CreateVolume")
	ev.Flags().StringVar(&eo.identity, "identity", "", "token id or name, initiator IQN")
	ev.Flags().StringVar(&eo.resource, "resource", "", "resource prefix, e.g. volumes/vol1")
	ev.Flags().StringVar(&eo.catgry, "category", "", "management or data")
	ev.Flags().IntVar(&eo.limit, "limit", 100, "records per page (1-1000)")
	ev.Flags().Uint64Var(&eo.after, "after", 0, "continue after this record number")

	var vo struct {
		dir    string
		remote string
		key    string
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the trail's hash chain and signed digests; names the first bad record",
		Long: "Without --remote, reads the trail directly from DATA/audit (works with the daemon stopped).\n" +
			"With --remote local|bucket, asks the daemon to verify its local copy or the copy delivered to the bucket.\n" +
			"Exit code 1 when the trail does not verify.",
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAuditVerify(cmd.Context(), g, vo.dir, vo.remote, vo.key)
		},
	}
	verify.Flags().StringVar(&vo.dir, "dir", "", "trail directory (default DATA/audit)")
	verify.Flags().StringVar(&vo.remote, "remote", "", "ask the daemon to verify: local or bucket")
	verify.Flags().StringVar(&vo.key, "public-key", "", "hex Ed25519 key to trust (default: the trail's public.key)")
	au.AddCommand(ev, verify)
	return au
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if _, err := time.Parse(time.RFC3339, s); err == nil {
		return s, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", &usageError{fmt.Errorf("time %q: want RFC 3339 or a duration such as 24h", s)}
	}
	return time.Now().Add(-d).UTC().Format(time.RFC3339), nil
}

func runAuditEvents(ctx context.Context, g *globalOptions, o auditEventsOptions) error {
	q := url.Values{}
	for k, v := range map[string]string{"name": o.name, "identity": o.identity, "resource": o.resource, "category": o.catgry} {
		if v != "" {
			q.Set(k, v)
		}
	}
	for k, v := range map[string]string{"since": o.since, "until": o.until} {
		t, err := parseWhen(v)
		if err != nil {
			return err
		}
		if t != "" {
			q.Set(k, t)
		}
	}
	q.Set("limit", strconv.Itoa(o.limit))
	if o.after > 0 {
		q.Set("after", strconv.FormatUint(o.after, 10))
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	ev, err := c.AuditEvents(ctx, q)
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(ev)
	}
	rows := [][]string{{"SEQ", "TIME", "NAME", "IDENTITY", "SOURCE", "RESOURCE", "RESULT"}}
	for _, raw := range ev.Events {
		var r audit.Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return err
		}
		who := r.Identity.Type
		if r.Identity.ID != "" {
			who += ":" + r.Identity.ID
		}
		result := r.Result
		if r.ErrorCode != "" {
			result += " (" + r.ErrorCode + ")"
		}
		rows = append(rows, []string{strconv.FormatUint(r.Seq, 10), r.Time.Format(time.RFC3339), r.Name, who, r.SourceAddr, r.Resource, result})
	}
	if err := g.table(rows); err != nil {
		return err
	}
	if ev.Next != 0 {
		fmt.Fprintf(g.stderr, "more: --after %d\n", ev.Next)
	}
	return nil
}

// errTrailBad is returned (exit 1) when verification finds a problem.
var errTrailBad = errors.New("the audit trail does not verify")

func runAuditVerify(ctx context.Context, g *globalOptions, dir, remote, key string) error {
	if err := g.validate(); err != nil {
		return err
	}
	var rep audit.Report
	if remote != "" {
		c, err := g.client()
		if err != nil {
			return err
		}
		if err := c.VerifyAudit(ctx, remote, &rep); err != nil {
			return err
		}
	} else {
		if dir == "" {
			dir = filepath.Join(g.dataDir, "audit")
		}
		var pub []byte
		if key != "" {
			k, err := hexKey(key)
			if err != nil {
				return err
			}
			pub = k
		}
		var err error
		if rep, err = audit.Verify(ctx, audit.DirSource(dir), pub); err != nil {
			return err
		}
	}
	if g.output == "json" {
		if err := g.printJSON(rep); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Fprintf(g.stdout, "OK: %d records in %d segments (%d sealed), chain ends at record %d\n", rep.Records, rep.Segments, rep.Sealed, rep.LastSeq)
	} else {
		fmt.Fprintf(g.stdout, "FAILED: %s\n", rep.Problem)
	}
	if !rep.OK {
		return errTrailBad
	}
	return nil
}

func hexKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, &usageError{fmt.Errorf("--public-key: want 64 hex digits")}
	}
	return k, nil
}
