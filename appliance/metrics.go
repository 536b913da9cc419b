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
	}
}

// Describe implements prometheus.Collector.
func (g *gatewayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.readBytes, g.writeBytes, g.readOps, g.writeOps, g.readTime, g.writeTime, g.volSize, g.iscsiSessions, g.storeUp, g.auditDropped, g.nfsSessions} {
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
		}
		vm.mu.Unlock()
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
