package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Operation names, used by metrics labels and fault rules.
const (
	OpPut               = "put"
	OpGet               = "get"
	OpHead              = "head"
	OpList              = "list"
	OpDelete            = "delete"
	OpDeleteMany        = "delete_many"
	OpCopy              = "copy"
	OpCreateMultipart   = "create_multipart"
	OpUploadPart        = "upload_part"
	OpUploadPartCopy    = "upload_part_copy"
	OpCompleteMultipart = "complete_multipart"
	OpAbortMultipart    = "abort_multipart"
)

// RetryOptions configure the retry wrapper. Zero fields take the defaults
// shown.
type RetryOptions struct {
	// MaxAttempts is the number of tries of one call (default 5).
	MaxAttempts int
	// BaseDelay is the first backoff (default 100ms); each retry doubles
	// it, with full jitter, up to MaxDelay (default 5s).
	BaseDelay, MaxDelay time.Duration
	// RequestTimeout bounds one attempt of a call without a data stream,
	// and the wait for the first byte of a Get (default 30s).
	RequestTimeout time.Duration
	// IdleTimeout bounds the time a data stream (Put body, Get body) may
	// make no progress before the attempt is abandoned (default 60s).
	IdleTimeout time.Duration
	// Logger receives one debug line per retry; nil discards.
	Logger *slog.Logger
}

func (o *RetryOptions) defaults() {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = 100 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// retryStore retries retryable failures with exponential backoff and bounds
// every attempt in time.
type retryStore struct {
	next Store
	o    RetryOptions
}

// NewRetry wraps s so that calls failing with a retryable error (see
// IsRetryable) are tried again with exponential backoff and full jitter, and
// so that no attempt hangs: calls without a data stream get RequestTimeout,
// data streams get IdleTimeout between bytes. A Put or UploadPart body is
// re-sent only when it is an io.Seeker; a Get body cut mid-way is resumed
// with a ranged read of the same ETag.
func NewRetry(s Store, o RetryOptions) Store {
	o.defaults()
	return &retryStore{next: s, o: o}
}

func (r *retryStore) Kind() string { return r.next.Kind() }

// errIdle is the cause recorded when a watchdog ends an attempt.
var errIdle = fmt.Errorf("no progress within the timeout: %w", ErrTransient)

// watchdog cancels a context when it is not kicked within its timeout.
type watchdog struct {
	t      *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
}

func newWatchdog(ctx context.Context, first, idle time.Duration) (context.Context, *watchdog) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{d: idle, cancel: cancel}
	w.t = time.AfterFunc(first, func() { cancel(errIdle) })
	return wctx, w
}

func (w *watchdog) kick() { w.t.Reset(w.d) }

func (w *watchdog) stop() {
	w.t.Stop()
	w.cancel(context.Canceled)
}

// cause turns an error of an attempt ended by the watchdog into errIdle.
func cause(actx context.Context, err error) error {
	if err != nil && errors.Is(context.Cause(actx), errIdle) {
		return fmt.Errorf("%w (%v)", errIdle, err)
	}
	return err
}

// readSeeker joins a wrapping reader with the Seek of the reader it wraps.
type readSeeker struct {
	io.Reader
	io.Seeker
}

// passSeek returns r, made an io.Seeker too when under (the reader r wraps)
// is one, so that wrappers keep a body rewindable without claiming to be
// seekable when it is not (clients test for io.Seeker).
func passSeek(r, under io.Reader) io.Reader {
	if s, ok := under.(io.Seeker); ok {
		return readSeeker{r, s}
	}
	return r
}

// kickReader kicks a watchdog on every read.
type kickReader struct {
	r io.Reader
	w *watchdog
}

func (k kickReader) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	k.w.kick()
	return n, err
}

// backoff sleeps before attempt n (n >= 1) or returns the context's error.
func (r *retryStore) backoff(ctx context.Context, op, key string, n int, err error) error {
	d := r.o.BaseDelay << (n - 1)
	if d > r.o.MaxDelay || d <= 0 {
		d = r.o.MaxDelay
	}
	d = time.Duration(rand.Int64N(int64(d)) + 1)
	r.o.Logger.Debug("object store retry", "op", op, "key", key, "attempt", n+1, "delay", d, "err", err)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// do runs fn with retries; each attempt gets RequestTimeout.
func (r *retryStore) do(ctx context.Context, op, key string, fn func(ctx context.Context) error) error {
	var err error
	for n := 1; ; n++ {
		actx, w := newWatchdog(ctx, r.o.RequestTimeout, r.o.RequestTimeout)
		err = cause(actx, fn(actx))
		w.stop()
		if err == nil || !IsRetryable(err) || ctx.Err() != nil || n >= r.o.MaxAttempts {
			return err
		}
		if berr := r.backoff(ctx, op, key, n, err); berr != nil {
			return err
		}
	}
}

// doBody runs fn, which sends body, with retries when body can be rewound.
func (r *retryStore) doBody(ctx context.Context, op, key string, body io.Reader, fn func(ctx context.Context, body io.Reader) error) error {
	seeker, canRewind := body.(io.Seeker)
	var start int64
	if canRewind {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			canRewind = false
		}
	}
	var err error
	for n := 1; ; n++ {
		actx, w := newWatchdog(ctx, r.o.RequestTimeout, r.o.IdleTimeout)
		err = cause(actx, fn(actx, passSeek(kickReader{body, w}, body)))
		w.stop()
		if err == nil || !IsRetryable(err) || ctx.Err() != nil || n >= r.o.MaxAttempts || !canRewind {
			return err
		}
		if berr := r.backoff(ctx, op, key, n, err); berr != nil {
			return err
		}
		if _, serr := seeker.Seek(start, io.SeekStart); serr != nil {
			return err
		}
	}
}

func (r *retryStore) Put(ctx context.Context, key string, body io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	var oi ObjectInfo
	err := r.doBody(ctx, OpPut, key, body, func(ctx context.Context, b io.Reader) (err error) {
		oi, err = r.next.Put(ctx, key, b, size, opts)
		return err
	})
	return oi, err
}

func (r *retryStore) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	rr := &resumeReader{r: r, ctx: ctx, key: key}
	var oi ObjectInfo
	err := r.do(ctx, OpGet, key, func(context.Context) error {
		// The attempt's context must outlive this call, so the reader owns
		// its own watchdog instead of the one do made.
		actx, w := newWatchdog(ctx, r.o.RequestTimeout, r.o.IdleTimeout)
		body, info, err := r.next.Get(actx, key, opts)
		if err != nil {
			w.stop()
			return cause(actx, err)
		}
		w.kick()
		oi = info
		rr.body, rr.w, rr.actx = body, w, actx
		return nil
	})
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	rr.etag = oi.ETag
	rr.off, rr.remain = 0, oi.Size
	if opts.Range != nil {
		rr.off = opts.Range.Offset
		rr.remain = oi.Size - rr.off
		if opts.Range.Length >= 0 && opts.Range.Length < rr.remain {
			rr.remain = opts.Range.Length
		}
	}
	return rr, oi, nil
}

// resumeReader reads a Get body and, when the stream breaks with a
// retryable error, reopens it at the current offset (same ETag).
type resumeReader struct {
	r        *retryStore
	ctx      context.Context // the caller's, for reopening
	key      string
	etag     string
	off      int64 // object offset of the next byte
	remain   int64 // bytes still expected
	body     io.ReadCloser
	w        *watchdog
	actx     context.Context
	attempts int
	// pending is a stream error held back while returning the data that
	// came with it; the next Read resumes the stream first.
	pending error
	mu      sync.Mutex
}

func (rr *resumeReader) Read(p []byte) (int, error) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for {
		if rr.body == nil {
			return 0, io.ErrClosedPipe
		}
		if rr.pending != nil {
			err := rr.pending
			rr.pending = nil
			if rerr := rr.reopen(err); rerr != nil {
				return 0, rerr
			}
		}
		n, err := rr.body.Read(p)
		rr.w.kick()
		rr.off += int64(n)
		rr.remain -= int64(n)
		if err == nil || (err == io.EOF && rr.remain <= 0) {
			return n, err
		}
		if err == io.EOF {
			err = fmt.Errorf("stream ended %d bytes early: %w", rr.remain, ErrTransient)
		}
		err = cause(rr.actx, err)
		if n > 0 {
			// Return the data; the error will come back on the next read.
			rr.pending = err
			return n, nil
		}
		if rerr := rr.reopen(err); rerr != nil {
			return 0, rerr
		}
	}
}

func (rr *resumeReader) reopen(err error) error {
	rr.attempts++
	if !IsRetryable(err) || rr.ctx.Err() != nil || rr.attempts >= rr.r.o.MaxAttempts {
		return err
	}
	rr.body.Close()
	rr.w.stop()
	rr.body = nil
	if berr := rr.r.backoff(rr.ctx, OpGet, rr.key, rr.attempts, err); berr != nil {
		return err
	}
	actx, w := newWatchdog(rr.ctx, rr.r.o.RequestTimeout, rr.r.o.IdleTimeout)
	body, _, gerr := rr.r.next.Get(actx, rr.key, GetOptions{Range: &Range{Offset: rr.off, Length: rr.remain}, IfMatch: rr.etag})
	if gerr != nil {
		w.stop()
		return fmt.Errorf("resuming %q at %d: %w", rr.key, rr.off, cause(actx, gerr))
	}
	rr.body, rr.w, rr.actx = body, w, actx
	return nil
}

func (rr *resumeReader) Close() error {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.body == nil {
		return nil
	}
	err := rr.body.Close()
	rr.w.stop()
	rr.body = nil
	return err
}

func (r *retryStore) Head(ctx context.Context, key string) (oi ObjectInfo, err error) {
	err = r.do(ctx, OpHead, key, func(ctx context.Context) (err error) {
		oi, err = r.next.Head(ctx, key)
		return err
	})
	return oi, err
}

func (r *retryStore) List(ctx context.Context, opts ListOptions) (p ListPage, err error) {
	err = r.do(ctx, OpList, opts.Prefix, func(ctx context.Context) (err error) {
		p, err = r.next.List(ctx, opts)
		return err
	})
	return p, err
}

func (r *retryStore) Delete(ctx context.Context, key string) error {
	return r.do(ctx, OpDelete, key, func(ctx context.Context) error { return r.next.Delete(ctx, key) })
}

func (r *retryStore) DeleteMany(ctx context.Context, keys []string) (failed map[string]error, err error) {
	err = r.do(ctx, OpDeleteMany, "", func(ctx context.Context) (err error) {
		failed, err = r.next.DeleteMany(ctx, keys)
		return err
	})
	return failed, err
}

func (r *retryStore) Copy(ctx context.Context, dst, src string, opts CopyOptions) (oi ObjectInfo, err error) {
	err = r.do(ctx, OpCopy, dst, func(ctx context.Context) (err error) {
		oi, err = r.next.Copy(ctx, dst, src, opts)
		return err
	})
	return oi, err
}

func (r *retryStore) CreateMultipart(ctx context.Context, key string, opts PutOptions) (id string, err error) {
	err = r.do(ctx, OpCreateMultipart, key, func(ctx context.Context) (err error) {
		id, err = r.next.CreateMultipart(ctx, key, opts)
		return err
	})
	return id, err
}

func (r *retryStore) UploadPart(ctx context.Context, key, uploadID string, n int, body io.Reader, size int64) (p Part, err error) {
	err = r.doBody(ctx, OpUploadPart, key, body, func(ctx context.Context, b io.Reader) (err error) {
		p, err = r.next.UploadPart(ctx, key, uploadID, n, b, size)
		return err
	})
	return p, err
}

func (r *retryStore) UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (p Part, err error) {
	err = r.do(ctx, OpUploadPartCopy, key, func(ctx context.Context) (err error) {
		p, err = r.next.UploadPartCopy(ctx, key, uploadID, n, src, offset, length)
		return err
	})
	return p, err
}

func (r *retryStore) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (oi ObjectInfo, err error) {
	err = r.do(ctx, OpCompleteMultipart, key, func(ctx context.Context) (err error) {
		oi, err = r.next.CompleteMultipart(ctx, key, uploadID, parts)
		return err
	})
	return oi, err
}

func (r *retryStore) AbortMultipart(ctx context.Context, key, uploadID string) error {
	return r.do(ctx, OpAbortMultipart, key, func(ctx context.Context) error {
		return r.next.AbortMultipart(ctx, key, uploadID)
	})
}
