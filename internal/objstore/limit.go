package objstore

import (
	"context"
	"io"
	"sync"

	"golang.org/x/time/rate"
)

// Limiter holds the upload and download bandwidth limits (token buckets
// from golang.org/x/time/rate). Limits can change while transfers run.
type Limiter struct {
	mu       sync.Mutex
	up, down *rate.Limiter
	upBps    int64
	downBps  int64
}

// NewLimiter returns a limiter with the given rates in bytes per second;
// 0 means unlimited.
func NewLimiter(upBps, downBps int64) *Limiter {
	l := &Limiter{up: rate.NewLimiter(rate.Inf, 0), down: rate.NewLimiter(rate.Inf, 0)}
	l.SetLimits(upBps, downBps)
	return l
}

// minBurst lets one read of a typical buffer through at once.
const minBurst = 256 << 10

func setRate(l *rate.Limiter, bps int64) {
	if bps <= 0 {
		l.SetLimit(rate.Inf)
		return
	}
	burst := max(int(bps/4), minBurst)
	l.SetBurst(burst)
	l.SetLimit(rate.Limit(bps))
}

// SetLimits changes the rates (bytes per second, 0 = unlimited).
func (l *Limiter) SetLimits(upBps, downBps int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.upBps, l.downBps = max(upBps, 0), max(downBps, 0)
	setRate(l.up, l.upBps)
	setRate(l.down, l.downBps)
}

// Limits returns the current rates (bytes per second, 0 = unlimited).
func (l *Limiter) Limits() (upBps, downBps int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.upBps, l.downBps
}

// limitedReader waits for tokens for every chunk it reads.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rate.Limiter
}

func (lr limitedReader) Read(p []byte) (int, error) {
	if lr.l.Limit() == rate.Inf {
		return lr.r.Read(p)
	}
	if b := lr.l.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.WaitN(lr.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

type limitedReadCloser struct {
	limitedReader
	c io.Closer
}

func (l limitedReadCloser) Close() error { return l.c.Close() }

// limitStore applies a Limiter to data streams.
type limitStore struct {
	Store
	l *Limiter
}

// NewLimited wraps s so that Put and UploadPart bodies are read no faster
// than the upload limit and Get bodies no faster than the download limit.
func NewLimited(s Store, l *Limiter) Store { return &limitStore{Store: s, l: l} }

func (s *limitStore) Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	return s.Store.Put(ctx, key, passSeek(limitedReader{ctx, r, s.l.up}, r), size, opts)
}

func (s *limitStore) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	return s.Store.UploadPart(ctx, key, uploadID, n, passSeek(limitedReader{ctx, r, s.l.up}, r), size)
}

func (s *limitStore) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	rc, oi, err := s.Store.Get(ctx, key, opts)
	if err != nil {
		return nil, oi, err
	}
	return limitedReadCloser{limitedReader{ctx, rc, s.l.down}, rc}, oi, nil
}
