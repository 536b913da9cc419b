// Package appliance wires Sluice's packages into the sluiced daemon: it
// opens the data directory and state database, builds the object-store
// stack, starts the listeners, and shuts everything down in order. It is the
// only package that knows all the others.
package appliance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sluicegw/sluice/blockcache"
	"github.com/sluicegw/sluice/control"
	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/control/monitor"
	"github.com/sluicegw/sluice/internal/events"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/state"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/nfs"
	"github.com/sluicegw/sluice/snapshot"
)

// Version is the daemon's version.
const Version = "0.1.0-dev"

// Start-up error classes; cmd/sluiced maps them to exit codes.
var (
	// ErrListen: a listener could not be opened (port in use, no
	// permission).
	ErrListen = errors.New("cannot listen")
	// ErrStore: the object store is unreachable or refused us.
	ErrStore = errors.New("object store unavailable")
	// ErrDataDir: the data directory or state database cannot be used
	// (including another daemon holding it).
	ErrDataDir = errors.New("data directory unusable")
)

// Files under the data directory.
const (
	stateFile        = "state.db"
	defaultCacheSize = 10 << 30
	snapshotPrefix   = "sluice-snapshots/"
	storeDir         = "store"
	auditDir         = "audit"
)

// Daemon is a running appliance.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	state    *state.DB
	base     objstore.Store // unwrapped, for health probes
	store    objstore.Store // the production stack
	limiter  *objstore.Limiter
	bw       *bandwidth
	metrics  *objstore.Metrics
	registry *prometheus.Registry
	control  *control.Server
	ctrlLn   net.Listener
	ctrlURL  string
	iscsi    *iscsi.Server
	iscsiLn  net.Listener
	volumes  *volumeManager
	nfs      *nfs.Server
	nfsLn    net.Listener
	shares   *shareManager
	tapes    *tapes
	audit    *audit.Log
	bus      *events.Bus
	catalog  *snapshot.Catalog
	cache    *blockcache.Cache
	ring     *monitor.Ring
	alarms   *monitor.Alarms
	// storeReachable is the last health probe's answer.
	storeReachable atomic.Bool
}

// storeStartTimeout bounds the first contact with the object store.
const storeStartTimeout = 20 * time.Second

// New prepares the daemon: data directory, state database, object store
// (creating the bucket when missing), admin token and listeners. Errors wrap
// ErrConfig, ErrDataDir, ErrStore or ErrListen. Nothing is served until Run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	if d.state, err = state.Open(filepath.Join(cfg.DataDir, stateFile)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	if err := d.openStore(ctx); err != nil {
		return nil, err
	}
	d.bus = events.NewBus()
	up := auditUploader{store: d.store, prefix: cfg.Audit.Prefix}
	if d.audit, err = audit.Open(filepath.Join(cfg.DataDir, auditDir), audit.Options{
		Uploader: up, Logger: log.With("component", "audit"),
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataDir, err)
	}
	if d.bw, err = newBandwidth(d.limiter, d.state); err != nil {
		return nil, fmt.Errorf("%w: bandwidth schedule: %w", ErrDataDir, err)
	}
	path, created, err := control.EnsureAdminToken(d.state, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("%w: admin token: %w", ErrDataDir, err)
	}
	if created {
		log.Info("created the first admin API token", "file", path)
		d.systemEvent("CreateAdminToken", "tokens", nil)
	}
	d.storeReachable.Store(true)
	d.registry.MustRegister(d.metrics, newGatewayCollector(d), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if d.iscsiLn, err = net.Listen("tcp", cfg.ISCSIAddr); err != nil {
		return nil, fmt.Errorf("%w: iSCSI on %s: %w", ErrListen, cfg.ISCSIAddr, err)
	}
	d.iscsi = iscsi.NewServer(iscsi.Config{
		Portals: cfg.ISCSIPortals,
		Logger:  log.With("component", "iscsi"),
		OnLogin: d.onISCSILogin,
	})
	if d.catalog, err = snapshot.Open(d.store, snapshot.Options{Prefix: snapshotPrefix, Logger: log.With("component", "snapshot")}); err != nil {
		return nil, fmt.Errorf("%w: snapshot catalogue: %w", ErrStore, err)
	}
	cacheSize := cfg.CacheSize
	if cacheSize == 0 {
		cacheSize = defaultCacheSize
	}
	if d.cache, err = blockcache.OpenCache(filepath.Join(cfg.DataDir, "cache"), d.catalog,
		blockcache.CacheConfig{Size: cacheSize}, blockcache.Options{Logger: log}); err != nil {
		if errors.Is(err, blockcache.ErrInvalid) {
			return nil, fmt.Errorf("%w: block cache: %w", ErrConfig, err)
		}
		return nil, fmt.Errorf("%w: block cache: %w", ErrDataDir, err)
	}
	if d.volumes, err = newVolumeManager(log.With("component", "volumes"), d.state, cfg.DataDir, d.iscsi, d.catalog, d.cache); err != nil {
		return nil, err
	}
	d.volumes.onEvent = d.bus.Publish
	if err := d.openNFS(log); err != nil {
		return nil, err
	}
	if err := d.openTapes(ctx); err != nil {
		return nil, err
	}
	d.ring = monitor.NewRing(d.registry, monitor.Options{Interval: cfg.MetricsInterval})
	d.alarms = monitor.NewAlarms(d.ring, d.alarmChanged)
	tlsCfg, err := controlTLS(cfg, log)
	if err != nil {
		return nil, err
	}
	if d.ctrlLn, err = net.Listen("tcp", cfg.ControlAddr); err != nil {
		return nil, fmt.Errorf("%w: control API on %s: %w", ErrListen, cfg.ControlAddr, err)
	}
	d.ctrlURL = "http://" + d.ctrlLn.Addr().String()
	if tlsCfg != nil {
		d.ctrlLn = tls.NewListener(d.ctrlLn, tlsCfg)
		d.ctrlURL = "https://" + d.ctrlLn.Addr().String()
	}
	d.control = control.New(control.Config{
		Version:   Version,
		Logger:    log.With("component", "control"),
		State:     d.state,
		Store:     storeProber{d},
		Bandwidth: d.bw,
		Settings:  d.bw,
		Gatherer:  d.registry,
		Gateway: api.Gateway{
			DataDir: cfg.DataDir, ControlAddr: d.ctrlLn.Addr().String(),
			ISCSIAddr: d.iscsiLn.Addr().String(), NFSAddr: d.nfsLn.Addr().String(), ObjectStore: d.base.Kind(),
		},
		OnBandwidthChange: d.saveBandwidth,
		Volumes:           d.volumes,
		Snapshots:         d.volumes,
		Shares:            d.shares,
		Tapes:             d.tapesAPI(),
		Audit:             d.audit,
		AuditBucket:       up,
		Metrics:           d.ring,
		Alarms:            d.alarms,
	})
	// The listener is bound, so clients that read the endpoint file now
	// are queued until Run serves them.
	if err := writeControlFile(cfg.DataDir, d.ctrlURL); err != nil {
		log.Warn("cannot write the control endpoint file", "err", err)
	}
	return d, nil
}

// settingsCollection holds appliance-wide settings in the state database.
const settingsCollection = "settings"

func (d *Daemon) saveBandwidth(b api.Bandwidth) error {
	return d.state.Update(func(tx *state.Tx) error { return tx.Put(settingsCollection, "bandwidth", b) })
}

func (d *Daemon) openStore(ctx context.Context) error {
	if d.cfg.S3.Endpoint == "" {
		e, err := objstore.OpenEmbedded(filepath.Join(d.cfg.DataDir, storeDir))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDataDir, err)
		}
		d.base = e
	} else {
		s3, err := objstore.NewS3(objstore.S3Config{
			Endpoint: d.cfg.S3.Endpoint, Bucket: d.cfg.S3.Bucket, Region: d.cfg.S3.Region,
			Credentials: objstore.DefaultCredentials(d.cfg.S3.CredentialsFile, d.cfg.S3.Profile),
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if err := ensureBucket(ctx, s3, d.cfg.S3.StartTimeout); err != nil {
			return fmt.Errorf("%w: %s bucket %s: %w", ErrStore, d.cfg.S3.Endpoint, d.cfg.S3.Bucket, err)
		}
		d.base = s3
	}
	up, down := d.cfg.Bandwidth.UploadBytesPerSec, d.cfg.Bandwidth.DownloadBytesPerSec
	if saved, err := state.Get[api.Bandwidth](d.state, settingsCollection, "bandwidth"); err == nil {
		up, down = saved.UploadBytesPerSec, saved.DownloadBytesPerSec
	}
	d.limiter = objstore.NewLimiter(up, down)
	d.metrics = objstore.NewMetrics()
	d.store = objstore.Wrap(d.base, objstore.Options{
		Retry:   objstore.RetryOptions{Logger: d.log.With("component", "objstore")},
		Limiter: d.limiter,
		Metrics: d.metrics,
	})
	return nil
}

// ensureBucket creates the bucket, retrying transient failures until the
// timeout (storeStartTimeout when zero).
func ensureBucket(ctx context.Context, s3 *objstore.S3, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = storeStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := s3.EnsureBucket(ctx)
		if err == nil || !objstore.IsRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

// storeProber adapts the daemon's store to control.StoreProber.
type storeProber struct{ d *Daemon }

// healthKey is a key that never exists; a Head of it proves the store
// answers (not found) without touching data.
const healthKey = ".sluice-health-probe"

func (p storeProber) Probe(ctx context.Context) error {
	_, err := p.d.base.Head(ctx, healthKey)
	if errors.Is(err, objstore.ErrNotFound) {
		err = nil
	}
	p.d.storeReachable.Store(err == nil)
	return err
}

func (p storeProber) Describe() (kind, endpoint, bucket string) {
	return p.d.base.Kind(), p.d.cfg.S3.Endpoint, p.d.cfg.S3.Bucket
}

// onISCSILogin audits every iSCSI login attempt (the iscsi package logs
// them; neither ever records secrets). Successful logins are data events
// (recorded when configured); refused ones are always recorded.
func (d *Daemon) onISCSILogin(ev iscsi.LoginEvent) {
	rec := audit.Record{
		Category: audit.Data, Source: "iscsi", Name: "ISCSILogin", Time: ev.Time,
		Identity: audit.Identity{Type: "initiator", ID: ev.Initiator}, SourceAddr: hostOf(ev.RemoteAddr),
		Resource: "targets/" + ev.Target, Result: audit.Success,
		Params: map[string]any{"session_type": ev.SessionType},
	}
	if ev.Success {
		// The iscsi package logs logins itself; this only audits.
		if d.cfg.Audit.DataEvents {
			d.audit.TryAppend(rec)
		}
		return
	}
	rec.Category, rec.Name, rec.Result = audit.Management, "ISCSILoginFailed", audit.Failure
	rec.ErrorCode = fmt.Sprintf("%02x%02x", ev.StatusClass, ev.StatusDetail)
	rec.Params["reason"] = ev.Reason
	d.audit.TryAppend(rec)
}

// alarmChanged records an alarm's state change in the audit trail, the log
// and the event bus.
func (d *Daemon) alarmChanged(rule monitor.Rule, from, to monitor.State) {
	d.log.Warn("alarm state changed", "alarm", rule.Name, "from", from.State, "to", to.State, "reason", to.Reason)
	d.systemEvent("AlarmStateChanged", "alarms/"+rule.Name, map[string]any{"from": from.State, "to": to.State, "reason": to.Reason})
	d.bus.Publish(events.Event{Type: events.AlarmStateChanged, Resource: "alarms/" + rule.Name,
		Attrs: map[string]string{"from": from.State, "to": to.State, "reason": to.Reason}})
}

// auditedEvents are the bus events that are significant system actions,
// with their audit names.
func auditedEvents() map[string]string {
	return map[string]string{
		events.SnapshotCompleted:     "SnapshotCompleted",
		events.SnapshotFailed:        "SnapshotFailed",
		events.TapeArchived:          "TapeArchived",
		events.TapeRetrieved:         "TapeRetrieved",
		events.CacheRefreshCompleted: "CacheRefreshCompleted",
	}
}

// auditEvents records significant events from the bus in the audit trail.
func (d *Daemon) auditEvents(ctx context.Context) {
	names := auditedEvents()
	types := make([]string, 0, len(names))
	for t := range names {
		types = append(types, t)
	}
	sub := d.bus.Subscribe(4096, types...)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C():
			params := make(map[string]any, len(e.Attrs))
			for k, v := range e.Attrs {
				params[k] = v
			}
			result := audit.Success
			if e.Type == events.SnapshotFailed {
				result = audit.Failure
			}
			d.audit.TryAppend(audit.Record{Category: audit.Management, Source: "system", Name: names[e.Type],
				Time: e.Time, Resource: e.Resource, Identity: audit.Identity{Type: "system"}, Params: params, Result: result})
		}
	}
}

// systemEvent records an action the appliance took by itself.
func (d *Daemon) systemEvent(name, resource string, params map[string]any) {
	_ = d.audit.Append(audit.Record{
		Category: audit.Management, Source: "system", Name: name, Resource: resource,
		Identity: audit.Identity{Type: "system"}, Params: params, Result: audit.Success,
	})
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// probeInterval is how often the object store is probed for the
// reachability gauge.
const probeInterval = 15 * time.Second

// probeLoop keeps storeReachable current.
func (d *Daemon) probeLoop(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.bw.apply(now)
			was := d.storeReachable.Load()
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := storeProber{d}.Probe(pctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			switch {
			case err != nil && was:
				d.log.Warn("object store unreachable; the gateway is degraded", "err", err)
				d.bus.Publish(events.Event{Type: events.VolumeDegraded, Resource: "gateway", Attrs: map[string]string{"reason": err.Error()}})
				d.systemEvent("GatewayDegraded", "gateway", map[string]any{"reason": err.Error()})
			case err == nil && !was:
				d.log.Info("object store reachable again")
				d.bus.Publish(events.Event{Type: events.VolumeRecovered, Resource: "gateway"})
				d.systemEvent("GatewayRecovered", "gateway", nil)
			}
		}
	}
}

// openNFS starts the file gateway: its listener, portmapper and shares.
func (d *Daemon) openNFS(log *slog.Logger) error {
	var err error
	if d.nfsLn, err = net.Listen("tcp", d.cfg.NFSAddr); err != nil {
		return fmt.Errorf("%w: NFS on %s: %w", ErrListen, d.cfg.NFSAddr, err)
	}
	pmap := d.cfg.NFS.PortmapAddr
	switch pmap {
	case "off":
		pmap = ""
	case "auto":
		host, _, _ := net.SplitHostPort(d.cfg.NFSAddr)
		pmap = net.JoinHostPort(host, "111")
		if ln, err := net.Listen("tcp", pmap); err != nil {
			log.Warn("portmapper not started: port 111 is not available; clients must name the NFS and MOUNT ports", "addr", pmap, "err", err)
			pmap = ""
		} else {
			ln.Close()
		}
	}
	d.nfs, err = nfs.NewServer(nfs.Config{
		Logger:      log, // the package names its component itself
		StateDir:    filepath.Join(d.cfg.DataDir, "nfs", "state"),
		CacheDir:    filepath.Join(d.cfg.DataDir, "nfs", "cache"),
		CacheSize:   d.cfg.NFS.CacheSize,
		MetadataTTL: d.cfg.NFS.MetadataTTL,
		SettleTime:  d.cfg.NFS.SettleTime,
		UploadHold:  d.cfg.NFS.UploadHold,
		PortmapAddr: pmap,
		OnUpload:    d.onUpload,
		OnMount:     d.onMount,
	})
	if err != nil {
		return fmt.Errorf("%w: NFS: %w", ErrDataDir, err)
	}
	stores := &bucketStores{d: d, m: map[string]objstore.Store{}}
	d.shares, err = newShareManager(log.With("component", "shares"), d.state, d.nfs, d.defaultBucket(), stores.get)
	if err != nil {
		return err
	}
	d.shares.onEvent = d.bus.Publish
	return nil
}

// tapesAPI returns the tape library for the control plane (nil when the
// library is off, so its routes are not served).
func (d *Daemon) tapesAPI() control.Tapes {
	if d.tapes == nil {
		return nil
	}
	return d.tapes
}

// NFSAddr returns the NFS listener's address.
func (d *Daemon) NFSAddr() string { return d.nfsLn.Addr().String() }

// gcLoop collects unreferenced snapshot chunks every GCInterval.
func (d *Daemon) gcLoop(ctx context.Context) {
	every := d.cfg.GCInterval
	if every <= 0 {
		every = 24 * time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := d.volumes.RunGC(ctx, false)
			if err != nil {
				d.log.Warn("snapshot garbage collection", "err", err)
				continue
			}
			d.log.Info("snapshot garbage collection", "deleted", res.Deleted, "deleted_bytes", res.DeletedBytes, "deferred", res.Deferred)
			d.systemEvent("RunGarbageCollection", "gc", map[string]any{"deleted": res.Deleted, "deleted_bytes": res.DeletedBytes, "deferred": res.Deferred})
		}
	}
}

// ISCSIAddr returns the iSCSI listener's address.
func (d *Daemon) ISCSIAddr() string { return d.iscsiLn.Addr().String() }

// ControlAddr returns the control listener's address (useful with port 0).
func (d *Daemon) ControlAddr() string { return d.ctrlLn.Addr().String() }

// Store returns the daemon's object store (the wrapped production stack).
func (d *Daemon) Store() objstore.Store { return d.store }

// Metrics returns the object-store counters.
func (d *Daemon) Metrics() *objstore.Metrics { return d.metrics }

// shutdownTimeout bounds the graceful drain.
const shutdownTimeout = 30 * time.Second

// Run serves until ctx is done, then shuts down gracefully: stop accepting,
// drain requests in flight, flush, close the state database.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("sluiced running", "version", Version, "control", d.ctrlURL,
		"iscsi", d.ISCSIAddr(), "data", d.cfg.DataDir, "object_store", d.base.Kind())
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := d.control.Serve(d.ctrlLn); err != nil {
			errc <- fmt.Errorf("control API: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := d.iscsi.Serve(d.iscsiLn); err != nil && !errors.Is(err, iscsi.ErrServerClosed) {
			errc <- fmt.Errorf("iSCSI: %w", err)
		}
	}()
	probeCtx, stopProbe := context.WithCancel(context.Background())
	wg.Add(6)
	go func() {
		defer wg.Done()
		d.auditEvents(probeCtx)
	}()
	go func() {
		defer wg.Done()
		if err := d.nfs.Serve(d.nfsLn); err != nil && !errors.Is(err, nfs.ErrServerClosed) {
			errc <- fmt.Errorf("NFS: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		d.probeLoop(probeCtx)
	}()
	go func() {
		defer wg.Done()
		if err := d.volumes.sched.Run(probeCtx); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("snapshot scheduler stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		d.gcLoop(probeCtx)
	}()
	go func() {
		defer wg.Done()
		d.ring.Run(probeCtx, d.alarms.Evaluate)
	}()
	var runErr error
	select {
	case <-ctx.Done():
		d.log.Info("shutting down")
	case runErr = <-errc:
		d.log.Error("listener failed; shutting down", "err", runErr)
	}
	stopProbe()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := d.control.Shutdown(sctx); err != nil {
		d.log.Warn("control API did not drain", "err", err)
	}
	// Sessions end after their commands in flight complete; then every
	// volume is flushed before the devices close.
	if err := d.iscsi.Shutdown(sctx); err != nil {
		d.log.Warn("iSCSI sessions did not drain", "err", err)
	}
	// Files written and not yet uploaded are uploaded now when the store
	// answers; otherwise they stay in the durable cache for the next start.
	if err := d.nfs.Shutdown(sctx); err != nil && !errors.Is(err, nfs.ErrServerClosed) {
		d.log.Warn("NFS uploads did not drain; they resume at the next start", "err", err)
	}
	wg.Wait()
	if err := d.volumes.flush(sctx); err != nil {
		d.log.Error("flushing volumes", "err", err)
		if runErr == nil {
			runErr = err
		}
	}
	d.systemEvent("Shutdown", "gateway", nil)
	if err := d.close(); err != nil && runErr == nil {
		runErr = err
	}
	d.log.Info("stopped")
	return runErr
}

// close releases what New opened.
func (d *Daemon) close() error {
	var errs []error
	if d.iscsiLn != nil {
		_ = d.iscsiLn.Close()
	}
	if d.nfsLn != nil {
		_ = d.nfsLn.Close()
	}
	if d.nfs != nil {
		// After Run this is a no-op; after a failed New it stops the
		// upload workers.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = d.nfs.Shutdown(ctx)
		cancel()
	}
	// The library saves its state at every change; a failure to save it
	// once more at close (store unreachable) loses nothing.
	if err := d.closeTapes(); err != nil {
		d.log.Warn("closing the tape library", "err", err)
	}
	if d.volumes != nil {
		errs = append(errs, d.volumes.close())
		d.volumes = nil
	}
	if d.cache != nil {
		errs = append(errs, d.cache.Close())
		d.cache = nil
	}
	if d.catalog != nil {
		errs = append(errs, d.catalog.Close())
		d.catalog = nil
	}
	if d.ctrlLn != nil {
		_ = d.ctrlLn.Close()
		_ = os.Remove(filepath.Join(d.cfg.DataDir, api.ControlEndpointFile))
	}
	if d.audit != nil {
		// Drains the queue and seals the open segment: nothing is lost on
		// a clean shutdown.
		errs = append(errs, d.audit.Close())
		d.audit = nil
	}
	if d.state != nil {
		errs = append(errs, d.state.Close())
		d.state = nil
	}
	return errors.Join(errs...)
}
