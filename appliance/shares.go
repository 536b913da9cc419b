package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
	"github.com/sluicegw/sluice/nfs"
)

// sharesCollection holds share records in the state database.
const sharesCollection = "shares"

// shareRecord is a share's configuration.
type shareRecord struct {
	Name           string    `json:"name"`
	Bucket         string    `json:"bucket"`
	Prefix         string    `json:"prefix,omitempty"`
	AllowedClients []string  `json:"allowed_clients"`
	Squash         string    `json:"squash"`
	AnonUID        uint32    `json:"anon_uid"`
	AnonGID        uint32    `json:"anon_gid"`
	ReadOnly       bool      `json:"read_only"`
	Created        time.Time `json:"created"`
}

// defaultShareClients: without an allowlist a share is reachable from this
// machine only.
var defaultShareClients = []string{"127.0.0.0/8", "::1/128"}

var shareName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// bucketName follows S3's bucket naming rules.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// shareManager creates, serves and deletes NFS shares. It implements
// control.Shares.
type shareManager struct {
	log    *slog.Logger
	state  *state.DB
	server *nfs.Server
	// storeFor returns the (wrapped) store of a bucket.
	storeFor func(ctx context.Context, bucket string) (objstore.Store, error)
	// onEvent publishes refresh completions (the event bus).
	onEvent func(events.Event)
	// defaultBucket is the gateway's bucket.
	defaultBucket string

	mu     sync.Mutex
	shares map[string]shareRecord
}

var _ control.Shares = (*shareManager)(nil)

func newShareManager(log *slog.Logger, db *state.DB, server *nfs.Server, defaultBucket string,
	storeFor func(context.Context, string) (objstore.Store, error)) (*shareManager, error) {
	m := &shareManager{log: log, state: db, server: server, storeFor: storeFor, defaultBucket: defaultBucket, shares: map[string]shareRecord{}}
	recs, err := state.List[shareRecord](db, sharesCollection)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	for _, rec := range recs {
		if err := m.serve(context.Background(), rec); err != nil {
			return nil, fmt.Errorf("%w: share %s: %w", ErrStore, rec.Name, err)
		}
	}
	return m, nil
}

func parseSquash(s string) (nfs.Squash, bool) {
	switch s {
	case "", "root":
		return nfs.RootSquash, true
	case "all":
		return nfs.AllSquash, true
	case "none":
		return nfs.NoSquash, true
	}
	return 0, false
}

func (m *shareManager) validate(req api.CreateShare) (shareRecord, error) {
	bad := func(format string, args ...any) (shareRecord, error) {
		return shareRecord{}, control.BadRequest(fmt.Errorf(format, args...))
	}
	if !shareName.MatchString(req.Name) {
		return bad("share name %q: 1-63 letters, digits, '.', '_', '-'", req.Name)
	}
	if req.Bucket == "" {
		req.Bucket = m.defaultBucket
	}
	if !bucketName.MatchString(req.Bucket) {
		return bad("bucket %q is not a valid bucket name", req.Bucket)
	}
	if strings.Contains(req.Prefix, "..") || strings.HasPrefix(req.Prefix, "/") {
		return bad("prefix %q: a relative key prefix such as team/docs/", req.Prefix)
	}
	if len(req.AllowedClients) == 0 {
		req.AllowedClients = defaultShareClients
	}
	if len(req.AllowedClients) > 100 {
		return bad("%d allowed client networks: at most 100", len(req.AllowedClients))
	}
	for _, c := range req.AllowedClients {
		if _, err := netip.ParsePrefix(c); err != nil {
			return bad("allowed client %q: want a CIDR such as 10.0.0.0/8", c)
		}
	}
	if req.Squash == "" {
		req.Squash = "root"
	}
	if _, ok := parseSquash(req.Squash); !ok {
		return bad("squash %q: want root, all or none", req.Squash)
	}
	return shareRecord{
		Name: req.Name, Bucket: req.Bucket, Prefix: req.Prefix, AllowedClients: slices.Clone(req.AllowedClients),
		Squash: req.Squash, AnonUID: req.AnonUID, AnonGID: req.AnonGID, ReadOnly: req.ReadOnly, Created: time.Now().UTC(),
	}, nil
}

func (m *shareManager) serve(ctx context.Context, rec shareRecord) error {
	store, err := m.storeFor(ctx, rec.Bucket)
	if err != nil {
		return err
	}
	squash, _ := parseSquash(rec.Squash)
	sh := nfs.Share{Name: rec.Name, Store: store, Prefix: rec.Prefix, Squash: squash,
		AnonUID: rec.AnonUID, AnonGID: rec.AnonGID, ReadOnly: rec.ReadOnly}
	for _, c := range rec.AllowedClients {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return err
		}
		sh.AllowedClients = append(sh.AllowedClients, p)
	}
	if err := m.server.AddShare(sh); err != nil {
		return err
	}
	m.mu.Lock()
	m.shares[rec.Name] = rec
	m.mu.Unlock()
	return nil
}

func (m *shareManager) toAPI(rec shareRecord) api.Share {
	out := api.Share{Name: rec.Name, Bucket: rec.Bucket, Prefix: rec.Prefix, ExportPath: "/" + rec.Name,
		AllowedClients: rec.AllowedClients, Squash: rec.Squash, AnonUID: rec.AnonUID, AnonGID: rec.AnonGID,
		ReadOnly: rec.ReadOnly, Created: rec.Created}
	for _, s := range m.server.Sessions() {
		if s.Share == rec.Name {
			out.Mounts++
		}
	}
	return out
}

// CreateShare implements control.Shares.
func (m *shareManager) CreateShare(ctx context.Context, req api.CreateShare) (api.Share, error) {
	rec, err := m.validate(req)
	if err != nil {
		return api.Share{}, err
	}
	if err := m.state.Update(func(tx *state.Tx) error { return tx.Create(sharesCollection, rec.Name, rec) }); err != nil {
		if errors.Is(err, state.ErrExists) {
			return api.Share{}, control.Conflict("share %s exists", rec.Name)
		}
		return api.Share{}, err
	}
	if err := m.serve(ctx, rec); err != nil {
		_ = m.state.Update(func(tx *state.Tx) error { return tx.Delete(sharesCollection, rec.Name) })
		if errors.Is(err, nfs.ErrInvalidShare) || errors.Is(err, objstore.ErrBucketNotFound) {
			return api.Share{}, control.BadRequest(err)
		}
		return api.Share{}, fmt.Errorf("serving share %s: %w", rec.Name, err)
	}
	m.log.Info("share created", "share", rec.Name, "bucket", rec.Bucket, "prefix", rec.Prefix)
	return m.toAPI(rec), nil
}

// ListShares implements control.Shares.
func (m *shareManager) ListShares(ctx context.Context) ([]api.Share, error) {
	recs := sortedValues(&m.mu, m.shares)
	out := make([]api.Share, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.toAPI(r))
	}
	return out, nil
}

// GetShare implements control.Shares.
func (m *shareManager) GetShare(ctx context.Context, name string) (api.Share, error) {
	m.mu.Lock()
	rec, ok := m.shares[name]
	m.mu.Unlock()
	if !ok {
		return api.Share{}, control.NotFound("no share %q", name)
	}
	return m.toAPI(rec), nil
}

// DeleteShare implements control.Shares. The objects stay in the bucket.
func (m *shareManager) DeleteShare(ctx context.Context, name string) error {
	if err := m.server.RemoveShare(name); err != nil {
		if errors.Is(err, nfs.ErrNoShare) {
			return control.NotFound("no share %q", name)
		}
		return err
	}
	m.mu.Lock()
	delete(m.shares, name)
	m.mu.Unlock()
	return m.state.Update(func(tx *state.Tx) error { return tx.Delete(sharesCollection, name) })
}

// RefreshShare implements control.Shares (AWS RefreshCache).
func (m *shareManager) RefreshShare(ctx context.Context, name string, req api.RefreshShare) error {
	err := m.server.Refresh(ctx, name, req.Path, req.Recursive)
	if errors.Is(err, nfs.ErrNoShare) {
		return control.NotFound("no share %q", name)
	}
	if err == nil && m.onEvent != nil {
		m.onEvent(events.Event{Type: events.CacheRefreshCompleted, Resource: "shares/" + name,
			Attrs: map[string]string{"path": req.Path, "recursive": fmt.Sprint(req.Recursive)}})
	}
	return err
}

// bucketStores opens one object store per bucket, sharing the gateway's
// limiter and counters.
type bucketStores struct {
	d  *Daemon
	mu sync.Mutex
	m  map[string]objstore.Store
}

func (b *bucketStores) get(ctx context.Context, bucket string) (objstore.Store, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.m[bucket]; ok {
		return s, nil
	}
	d := b.d
	if bucket == d.defaultBucket() {
		return d.store, nil
	}
	var base objstore.Store
	switch {
	case d.cfg.S3.Endpoint == "":
		// The embedded store keeps each other bucket in its own directory.
		e, err := objstore.OpenEmbedded(filepath.Join(d.cfg.DataDir, bucketsDir, bucket))
		if err != nil {
			return nil, err
		}
		base = e
	default:
		s3, err := objstore.NewS3(objstore.S3Config{
			Endpoint: d.cfg.S3.Endpoint, Bucket: bucket, Region: d.cfg.S3.Region,
			Credentials: objstore.DefaultCredentials(d.cfg.S3.CredentialsFile, d.cfg.S3.Profile),
		})
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = s3.Head(pctx, healthKey)
		cancel()
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		base = s3
	}
	s := objstore.Wrap(base, objstore.Options{
		Retry:   objstore.RetryOptions{Logger: d.log.With("component", "objstore", "bucket", bucket)},
		Limiter: d.limiter, Metrics: d.metrics,
	})
	b.m[bucket] = s
	return s, nil
}

// defaultBucket names the gateway's own bucket ("sluice" for the embedded
// store).
func (d *Daemon) defaultBucket() string {
	if d.cfg.S3.Bucket != "" {
		return d.cfg.S3.Bucket
	}
	return "sluice"
}

// onUpload publishes an uploaded file on the event bus and, when data
// events are on, in the audit trail.
func (d *Daemon) onUpload(ev nfs.UploadEvent) {
	d.bus.Publish(events.Event{Type: events.FileUploaded, Time: ev.Time, Resource: "shares/" + ev.Share + "/" + ev.Path,
		Attrs: map[string]string{"key": ev.Key, "size": fmt.Sprint(ev.Size), "etag": ev.ETag}})
	if d.cfg.Audit.DataEvents {
		d.audit.TryAppend(audit.Record{Category: audit.Data, Source: "nfs", Name: "FileUploaded", Time: ev.Time,
			Identity: audit.Identity{Type: "system"}, Resource: "shares/" + ev.Share + "/" + ev.Path, Result: audit.Success,
			Params: map[string]any{"key": ev.Key, "size": ev.Size}})
	}
}

// onMount audits share mounts: refused ones always (management), allowed
// ones as data events.
func (d *Daemon) onMount(ev nfs.MountEvent) {
	rec := audit.Record{Category: audit.Data, Source: "nfs", Name: "MountShare", Time: ev.Time,
		Identity: audit.Identity{Type: "nfs-client", ID: ev.Client.String()}, SourceAddr: ev.Client.String(),
		Resource: "shares/" + ev.Share, Result: audit.Success}
	if !ev.Allowed {
		rec.Category, rec.Name, rec.Result, rec.ErrorCode = audit.Management, "MountShareRefused", audit.Failure, "MNT3ERR_ACCES"
		d.audit.TryAppend(rec)
		return
	}
	if d.cfg.Audit.DataEvents {
		d.audit.TryAppend(rec)
	}
}

// bucketsDir holds the embedded store's other buckets.
const bucketsDir = "buckets"

// sortedValues returns a map's values in key order, read under mu.
func sortedValues[V any](mu *sync.Mutex, m map[string]V) []V {
	mu.Lock()
	defer mu.Unlock()
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}
