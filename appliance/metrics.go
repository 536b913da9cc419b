package appliance

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gateway metrics, named after AWS Storage Gateway's CloudWatch metrics in
// Prometheus style (CloudBytesUploaded → sluice_cloud_bytes_uploaded_total).

// volumeStats counts one volume's traffic.
type volumeStats struct {
	readBytes, writeBytes atomic.Int64
	readOps, writeOps     atomic.Int64
	readNanos, writeNanos atomic.Int64
}

// countingDevice wraps a volume's device and counts what passes.
type countingDevice struct {
	volumeDevice
	st *volumeStats
}

func (c countingDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	start := time.Now()
	err := c.volumeDevice.ReadAt(ctx, p, off)
	c.st.readNanos.Add(int64(time.Since(start)))
	c.st.readOps.Add(1)
	c.st.readBytes.Add(int64(len(p)))
	return err
}

func (c countingDevice) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	start := time.Now()
	err := c.volumeDevice.WriteAt(ctx, p, off, fua)
	c.st.writeNanos.Add(int64(time.Since(start)))
	c.st.writeOps.Add(1)
	c.st.writeBytes.Add(int64(len(p)))
	return err
}

// gatewayCollector exports the gateway metrics at scrape time.
type gatewayCollector struct {
	d *Daemon

	readBytes, writeBytes, readOps, writeOps, readTime, writeTime *prometheus.Desc
	volSize, iscsiSessions, storeUp, auditDropped, nfsSessions    *prometheus.Desc
	cacheHit, cacheUsed, cacheDirty, uploadBuf, sinceRecovery     *prometheus.Desc
	gwCacheUsed, gwCacheDirty, gwUploadBuf, gwDegraded            *prometheus.Desc
}

func newGatewayCollector(d *Daemon) *gatewayCollector {
	vol := []string{"volume"}
	return &gatewayCollector{
		d:             d,
		readBytes:     prometheus.NewDesc("sluice_volume_read_bytes_total", "Bytes read by initiators (AWS ReadBytes).", vol, nil),
		writeBytes:    prometheus.NewDesc("sluice_volume_write_bytes_total", "Bytes written by initiators (AWS WriteBytes).", vol, nil),
		readOps:       prometheus.NewDesc("sluice_volume_read_ops_total", "Read operations.", vol, nil),
		writeOps:      prometheus.NewDesc("sluice_volume_write_ops_total", "Write operations.", vol, nil),
		readTime:      prometheus.NewDesc("sluice_volume_read_seconds_total", "Time spent in reads (AWS ReadTime).", vol, nil),
		writeTime:     prometheus.NewDesc("sluice_volume_write_seconds_total", "Time spent in writes (AWS WriteTime).", vol, nil),
		volSize:       prometheus.NewDesc("sluice_volume_size_bytes", "Volume size.", vol, nil),
		iscsiSessions: prometheus.NewDesc("sluice_iscsi_sessions", "Logged-in iSCSI sessions (AWS IscsiSessions), discovery sessions excluded.", []string{"target"}, nil),
		storeUp:       prometheus.NewDesc("sluice_objstore_reachable", "1 when the object store answered the last health probe.", nil, nil),
		auditDropped:  prometheus.NewDesc("sluice_audit_dropped_records_total", "Data-event audit records dropped because the queue was full.", nil, nil),
		nfsSessions:   prometheus.NewDesc("sluice_nfs_sessions", "Clients with the share mounted (AWS NfsSessions).", []string{"share"}, nil),
		cacheHit:      prometheus.NewDesc("sluice_volume_cache_hit_percent", "Reads of a cached volume served from the cache (AWS CacheHitPercent).", vol, nil),
		cacheUsed:     prometheus.NewDesc("sluice_volume_cache_percent_used", "Share of the cache a cached volume uses (AWS CachePercentUsed).", vol, nil),
		cacheDirty:    prometheus.NewDesc("sluice_volume_cache_percent_dirty", "Share of the cache holding a volume's data not yet in S3 (AWS CachePercentDirty).", vol, nil),
		uploadBuf:     prometheus.NewDesc("sluice_volume_upload_buffer_percent_used", "Share of the upload buffer a volume fills (AWS UploadBufferPercentUsed).", vol, nil),
		sinceRecovery: prometheus.NewDesc("sluice_volume_time_since_last_recovery_point_seconds", "Time since every write of the volume was in S3 (AWS TimeSinceLastRecoveryPoint).", vol, nil),
		gwCacheUsed:   prometheus.NewDesc("sluice_cache_percent_used", "Share of the gateway's block cache in use (AWS CachePercentUsed).", nil, nil),
		gwCacheDirty:  prometheus.NewDesc("sluice_cache_percent_dirty", "Share of the gateway's block cache not yet in S3 (AWS CachePercentDirty).", nil, nil),
		gwUploadBuf:   prometheus.NewDesc("sluice_upload_buffer_percent_used", "Share of the gateway's upload buffer in use (AWS UploadBufferPercentUsed).", nil, nil),
		gwDegraded:    prometheus.NewDesc("sluice_cache_degraded", "1 while the block cache cannot reach the object store.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (g *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.readBytes, g.writeBytes, g.readOps, g.writeOps, g.readTime, g.writeTime, g.volSize, g.iscsiSessions, g.storeUp, g.auditDropped, g.nfsSessions,
		g.cacheHit, g.cacheUsed, g.cacheDirty, g.uploadBuf, g.sinceRecovery, g.gwCacheUsed, g.gwCacheDirty, g.gwUploadBuf, g.gwDegraded} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (g *gatewayCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if vm := g.d.volumes; vm != nil {
		vm.mu.Lock()
		for name, v := range vm.volumes {
			st := v.stats
			counter(g.readBytes, float64(st.readBytes.Load()), name)
			counter(g.writeBytes, float64(st.writeBytes.Load()), name)
			counter(g.readOps, float64(st.readOps.Load()), name)
			counter(g.writeOps, float64(st.writeOps.Load()), name)
			counter(g.readTime, time.Duration(st.readNanos.Load()).Seconds(), name)
			counter(g.writeTime, time.Duration(st.writeNanos.Load()).Seconds(), name)
			gauge(g.volSize, float64(v.rec.SizeBytes), name)
			if v.cached != nil {
				in := v.cached.Info()
				gauge(g.cacheHit, in.CacheHitPercent, name)
				gauge(g.cacheUsed, in.CachePercentUsed, name)
				gauge(g.cacheDirty, in.CachePercentDirty, name)
				gauge(g.uploadBuf, in.UploadBufferPercentUsed, name)
				gauge(g.sinceRecovery, in.TimeSinceLastRecoveryPoint.Seconds(), name)
			}
		}
		vm.mu.Unlock()
	}
	if g.d.cache != nil {
		in := g.d.cache.Info()
		gauge(g.gwCacheUsed, in.CachePercentUsed)
		gauge(g.gwCacheDirty, in.CachePercentDirty)
		gauge(g.gwUploadBuf, in.UploadBufferPercentUsed)
		deg := 0.0
		if in.Degraded {
			deg = 1
		}
		gauge(g.gwDegraded, deg)
	}
	sessions := map[string]int{}
	if g.d.iscsi != nil {
		for _, s := range g.d.iscsi.Sessions() {
			if !s.Discovery {
				sessions[s.Target]++
			}
		}
	}
	for t, n := range sessions {
		gauge(g.iscsiSessions, float64(n), t)
	}
	if g.d.nfs != nil {
		mounts := map[string]int{}
		for _, s := range g.d.nfs.Sessions() {
			mounts[s.Share]++
		}
		for sh, n := range mounts {
			gauge(g.nfsSessions, float64(n), sh)
		}
	}
	up := 0.0
	if g.d.storeReachable.Load() {
		up = 1
	}
	gauge(g.storeUp, up)
	if g.d.audit != nil {
		counter(g.auditDropped, float64(g.d.audit.Dropped()))
	}
}
