package objstore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// FaultRule describes one injected fault. A rule matches calls of Op (every
// operation when Op is empty).
type FaultRule struct {
	// Op is the operation the rule applies to ("" = all).
	Op string
	// Nth, when positive, makes the rule fire only on the Nth matching call
	// (1-based) counted from when the rule was added; 0 fires on every call.
	Nth int
	// Times, when positive, limits how often the rule fires.
	Times int
	// Err is returned instead of calling the store (nil: call it).
	Err error
	// Latency is added before the call.
	Latency time.Duration
	// CutAfter, when positive, makes a data stream (Put/UploadPart body,
	// Get body) fail with a transient error after this many bytes.
	CutAfter int64
}

// ErrInjected is the transient error a FaultRule with CutAfter produces, and
// a convenient Err for rules.
var ErrInjected = fmt.Errorf("injected fault: %w", ErrTransient)

type faultState struct {
	FaultRule
	seen, fired int
}

// FaultStore wraps a Store and injects failures, latency and cut streams by
// rule. It is for tests.
type FaultStore struct {
	next  Store
	mu    sync.Mutex
	rules []*faultState
	calls map[string]int
}

// NewFaultStore wraps s with no rules.
func NewFaultStore(s Store) *FaultStore {
	return &FaultStore{next: s, calls: map[string]int{}}
}

// Add installs a rule.
func (f *FaultStore) Add(r FaultRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &faultState{FaultRule: r})
}

// Clear removes every rule.
func (f *FaultStore) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Calls returns how many calls of op reached the wrapper.
func (f *FaultStore) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Kind reports the wrapped store's kind.
func (f *FaultStore) Kind() string { return f.next.Kind() }

// fire returns the combined effect of the rules matching this call.
func (f *FaultStore) fire(op string) (err error, latency time.Duration, cut int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, r := range f.rules {
		if r.Op != "" && r.Op != op {
			continue
		}
		r.seen++
		if r.Nth > 0 && r.seen != r.Nth {
			continue
		}
		if r.Times > 0 && r.fired >= r.Times {
			continue
		}
		r.fired++
		latency += r.Latency
		if r.Err != nil && err == nil {
			err = r.Err
		}
		if r.CutAfter > 0 {
			cut = r.CutAfter
		}
	}
	return err, latency, cut
}

func (f *FaultStore) enter(ctx context.Context, op string) (int64, error) {
	err, lat, cut := f.fire(op)
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
	if err != nil {
		return 0, fmt.Errorf("fault store %s: %w", op, err)
	}
	return cut, nil
}

// cutReader fails after a number of bytes.
type cutReader struct {
	r    io.Reader
	left int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("stream cut: %w", ErrInjected)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

type cutReadCloser struct {
	*cutReader
	c io.Closer
}

func (c cutReadCloser) Close() error { return c.c.Close() }

// Put implements Store.
func (f *FaultStore) Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	cut, err := f.enter(ctx, OpPut)
	if err != nil {
		return ObjectInfo{}, err
	}
	if cut > 0 {
		r = passSeek(&cutReader{r: r, left: cut}, r)
	}
	return f.next.Put(ctx, key, r, size, opts)
}

// Get implements Store.
func (f *FaultStore) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	cut, err := f.enter(ctx, OpGet)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	rc, oi, err := f.next.Get(ctx, key, opts)
	if err != nil || cut <= 0 {
		return rc, oi, err
	}
	return cutReadCloser{&cutReader{r: rc, left: cut}, rc}, oi, nil
}

// Head implements Store.
func (f *FaultStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	if _, err := f.enter(ctx, OpHead); err != nil {
		return ObjectInfo{}, err
	}
	return f.next.Head(ctx, key)
}

// List implements Store.
func (f *FaultStore) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	if _, err := f.enter(ctx, OpList); err != nil {
		return ListPage{}, err
	}
	return f.next.List(ctx, opts)
}

// Delete implements Store.
func (f *FaultStore) Delete(ctx context.Context, key string) error {
	if _, err := f.enter(ctx, OpDelete); err != nil {
		return err
	}
	return f.next.Delete(ctx, key)
}

// DeleteMany implements Store.
func (f *FaultStore) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	if _, err := f.enter(ctx, OpDeleteMany); err != nil {
		return nil, err
	}
	return f.next.DeleteMany(ctx, keys)
}

// Copy implements Store.
func (f *FaultStore) Copy(ctx context.Context, dst, src string, opts CopyOptions) (ObjectInfo, error) {
	if _, err := f.enter(ctx, OpCopy); err != nil {
		return ObjectInfo{}, err
	}
	return f.next.Copy(ctx, dst, src, opts)
}

// CreateMultipart implements Store.
func (f *FaultStore) CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error) {
	if _, err := f.enter(ctx, OpCreateMultipart); err != nil {
		return "", err
	}
	return f.next.CreateMultipart(ctx, key, opts)
}

// UploadPart implements Store.
func (f *FaultStore) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	cut, err := f.enter(ctx, OpUploadPart)
	if err != nil {
		return Part{}, err
	}
	if cut > 0 {
		r = passSeek(&cutReader{r: r, left: cut}, r)
	}
	return f.next.UploadPart(ctx, key, uploadID, n, r, size)
}

// UploadPartCopy implements Store.
func (f *FaultStore) UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (Part, error) {
	if _, err := f.enter(ctx, OpUploadPartCopy); err != nil {
		return Part{}, err
	}
	return f.next.UploadPartCopy(ctx, key, uploadID, n, src, offset, length)
}

// CompleteMultipart implements Store.
func (f *FaultStore) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error) {
	if _, err := f.enter(ctx, OpCompleteMultipart); err != nil {
		return ObjectInfo{}, err
	}
	return f.next.CompleteMultipart(ctx, key, uploadID, parts)
}

// AbortMultipart implements Store.
func (f *FaultStore) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if _, err := f.enter(ctx, OpAbortMultipart); err != nil {
		return err
	}
	return f.next.AbortMultipart(ctx, key, uploadID)
}
