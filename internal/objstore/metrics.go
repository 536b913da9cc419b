package objstore

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// allOps lists every operation, in a fixed order, for metrics.
var allOps = [...]string{
	OpPut, OpGet, OpHead, OpList, OpDelete, OpDeleteMany, OpCopy, OpCreateMultipart,
	OpUploadPart, OpUploadPartCopy, OpCompleteMultipart, OpAbortMultipart,
}

func opIndex(op string) int {
	for i, o := range allOps {
		if o == op {
			return i
		}
	}
	panic("objstore: unknown op " + op)
}

// Metrics counts the object store traffic of a store wrapped by
// NewInstrumented: requests and errors per operation, bytes up and down, and
// request latency. It is a prometheus.Collector; Snapshot reads the counters
// directly (tests, status output).
type Metrics struct {
	requests  [len(allOps)]atomic.Int64
	errors    [len(allOps)]atomic.Int64
	bytesUp   atomic.Int64
	bytesDown atomic.Int64
	latency   *prometheus.HistogramVec

	reqDesc, errDesc, upDesc, downDesc *prometheus.Desc
}

// NewMetrics returns zeroed counters.
func NewMetrics() *Metrics {
	return &Metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_objstore_request_duration_seconds",
			Help:    "Object store request latency (to the first byte for reads), per operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"op"}),
		reqDesc:  prometheus.NewDesc("sluice_objstore_requests_total", "Object store requests sent, per operation (each retry counts).", []string{"op"}, nil),
		errDesc:  prometheus.NewDesc("sluice_objstore_errors_total", "Object store requests that failed, per operation (not found and failed preconditions are not failures).", []string{"op"}, nil),
		upDesc:   prometheus.NewDesc("sluice_objstore_uploaded_bytes_total", "Bytes sent to the object store.", nil, nil),
		downDesc: prometheus.NewDesc("sluice_objstore_downloaded_bytes_total", "Bytes received from the object store.", nil, nil),
	}
}

// Stats is a snapshot of Metrics.
type Stats struct {
	Requests  map[string]int64
	Errors    map[string]int64
	BytesUp   int64
	BytesDown int64
}

// Snapshot returns the current counter values.
func (m *Metrics) Snapshot() Stats {
	s := Stats{Requests: map[string]int64{}, Errors: map[string]int64{}, BytesUp: m.bytesUp.Load(), BytesDown: m.bytesDown.Load()}
	for i, op := range allOps {
		s.Requests[op] = m.requests[i].Load()
		s.Errors[op] = m.errors[i].Load()
	}
	return s
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.reqDesc
	ch <- m.errDesc
	ch <- m.upDesc
	ch <- m.downDesc
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for i, op := range allOps {
		ch <- prometheus.MustNewConstMetric(m.reqDesc, prometheus.CounterValue, float64(m.requests[i].Load()), op)
		ch <- prometheus.MustNewConstMetric(m.errDesc, prometheus.CounterValue, float64(m.errors[i].Load()), op)
	}
	ch <- prometheus.MustNewConstMetric(m.upDesc, prometheus.CounterValue, float64(m.bytesUp.Load()))
	ch <- prometheus.MustNewConstMetric(m.downDesc, prometheus.CounterValue, float64(m.bytesDown.Load()))
	m.latency.Collect(ch)
}

func (m *Metrics) observe(op string, start time.Time, err error) {
	i := opIndex(op)
	m.requests[i].Add(1)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrPreconditionFailed) {
		m.errors[i].Add(1)
	}
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// countReader adds the bytes read to a counter.
type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countReadCloser struct {
	countReader
	c io.Closer
}

func (c countReadCloser) Close() error { return c.c.Close() }

// instrumented counts every call into Metrics.
type instrumented struct {
	next Store
	m    *Metrics
}

// NewInstrumented wraps s so that every call is counted in m.
func NewInstrumented(s Store, m *Metrics) Store { return &instrumented{next: s, m: m} }

func (s *instrumented) Kind() string { return s.next.Kind() }

func (s *instrumented) Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	start := time.Now()
	oi, err := s.next.Put(ctx, key, passSeek(countReader{r, &s.m.bytesUp}, r), size, opts)
	s.m.observe(OpPut, start, err)
	return oi, err
}

func (s *instrumented) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	start := time.Now()
	rc, oi, err := s.next.Get(ctx, key, opts)
	s.m.observe(OpGet, start, err)
	if err != nil {
		return nil, oi, err
	}
	return countReadCloser{countReader{rc, &s.m.bytesDown}, rc}, oi, nil
}

func (s *instrumented) Head(ctx context.Context, key string) (ObjectInfo, error) {
	start := time.Now()
	oi, err := s.next.Head(ctx, key)
	s.m.observe(OpHead, start, err)
	return oi, err
}

func (s *instrumented) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	start := time.Now()
	p, err := s.next.List(ctx, opts)
	s.m.observe(OpList, start, err)
	return p, err
}

func (s *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.next.Delete(ctx, key)
	s.m.observe(OpDelete, start, err)
	return err
}

func (s *instrumented) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	start := time.Now()
	f, err := s.next.DeleteMany(ctx, keys)
	s.m.observe(OpDeleteMany, start, err)
	return f, err
}

func (s *instrumented) Copy(ctx context.Context, dst, src string, opts CopyOptions) (ObjectInfo, error) {
	start := time.Now()
	oi, err := s.next.Copy(ctx, dst, src, opts)
	s.m.observe(OpCopy, start, err)
	return oi, err
}

func (s *instrumented) CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error) {
	start := time.Now()
	id, err := s.next.CreateMultipart(ctx, key, opts)
	s.m.observe(OpCreateMultipart, start, err)
	return id, err
}

func (s *instrumented) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	start := time.Now()
	p, err := s.next.UploadPart(ctx, key, uploadID, n, passSeek(countReader{r, &s.m.bytesUp}, r), size)
	s.m.observe(OpUploadPart, start, err)
	return p, err
}

func (s *instrumented) UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (Part, error) {
	start := time.Now()
	p, err := s.next.UploadPartCopy(ctx, key, uploadID, n, src, offset, length)
	s.m.observe(OpUploadPartCopy, start, err)
	return p, err
}

func (s *instrumented) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error) {
	start := time.Now()
	oi, err := s.next.CompleteMultipart(ctx, key, uploadID, parts)
	s.m.observe(OpCompleteMultipart, start, err)
	return oi, err
}

func (s *instrumented) AbortMultipart(ctx context.Context, key, uploadID string) error {
	start := time.Now()
	err := s.next.AbortMultipart(ctx, key, uploadID)
	s.m.observe(OpAbortMultipart, start, err)
	return err
}
