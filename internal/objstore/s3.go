package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3 store.
type S3Config struct {
	// Endpoint is the service URL, e.g. "https://s3.eu-west-1.amazonaws.com"
	// or "http://127.0.0.1:9000".
	Endpoint string
	// Bucket holds every object of this store.
	Bucket string
	// Region is the bucket's region; empty lets the client discover it.
	Region string
	// Credentials supply the access keys; see DefaultCredentials.
	Credentials *credentials.Credentials
	// Transport replaces the HTTP transport (tests, custom TLS).
	Transport http.RoundTripper
}

// DefaultCredentials returns the standard AWS credential chain: the
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)
// environment, then the shared credentials file (credentialsFile, or
// AWS_SHARED_CREDENTIALS_FILE, or ~/.aws/credentials) with profile (or
// AWS_PROFILE, or "default"). Keys never come from command-line flags.
func DefaultCredentials(credentialsFile, profile string) *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Filename: credentialsFile, Profile: profile},
	})
}

// S3 is a Store backed by an S3-compatible service through minio-go.
type S3 struct {
	core   minio.Core
	bucket string
}

var _ Store = (*S3)(nil)

// NewS3 creates an S3 store. It does not contact the service.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("s3 endpoint %q: want http(s)://host[:port]: %w", cfg.Endpoint, ErrInvalidArgument)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3: no bucket: %w", ErrInvalidArgument)
	}
	creds := cfg.Credentials
	if creds == nil {
		creds = DefaultCredentials("", "")
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:     creds,
		Secure:    u.Scheme == "https",
		Region:    cfg.Region,
		Transport: cfg.Transport,
		// Sluice's Retry wrapper owns retries, so the client makes one
		// attempt per call.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	return &S3{core: minio.Core{Client: c}, bucket: cfg.Bucket}, nil
}

// Kind returns "s3".
func (s *S3) Kind() string { return "s3" }

// Bucket returns the bucket name.
func (s *S3) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket when it does not exist.
func (s *S3) EnsureBucket(ctx context.Context) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.wrap("bucket exists", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{})
	if err != nil {
		resp := minio.ToErrorResponse(err)
		if resp.Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return s.wrap("make bucket", s.bucket, err)
	}
	return nil
}

// wrap classifies a minio-go error into the package's error classes.
func (s *S3) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3 %s %q: %w", op, key, err)
	}
	resp := minio.ToErrorResponse(err)
	var class error
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchUpload" || resp.Code == "NoSuchVersion":
		class = ErrNotFound
	case resp.Code == "NoSuchBucket":
		class = ErrBucketNotFound
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		class = ErrPreconditionFailed
	case resp.Code == "SlowDown" || resp.Code == "RequestTimeout" || resp.Code == "InternalError" ||
		resp.Code == "ServiceUnavailable" || resp.Code == "XMinioServerNotInitialized" ||
		resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		class = ErrTransient
	case resp.Code == "NotImplemented":
		class = ErrNotSupported
	case resp.StatusCode == http.StatusNotFound:
		class = ErrNotFound
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		class = ErrInvalidArgument
	default:
		// No HTTP answer at all: the network or the server is down.
		class = ErrTransient
	}
	return fmt.Errorf("s3 %s %q: %w: %w", op, key, class, err)
}

func (s *S3) putOpts(opts PutOptions) minio.PutObjectOptions {
	po := minio.PutObjectOptions{
		ContentType:  opts.ContentType,
		StorageClass: opts.StorageClass,
		UserMetadata: opts.Metadata,
		// Signing the payload's SHA-256 costs a full extra pass over the
		// data on plain HTTP; without it minio-go sends a CRC32C trailer,
		// so the body is still checked end to end.
		DisableContentSha256: true,
	}
	if opts.IfNoneMatch {
		po.SetMatchETagExcept("*")
	}
	if opts.IfMatch != "" {
		po.SetMatchETag(opts.IfMatch)
	}
	return po
}

func toInfo(key string, oi minio.ObjectInfo) ObjectInfo {
	out := ObjectInfo{
		Key: key, Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`), LastModified: oi.LastModified,
		ContentType: oi.ContentType, StorageClass: oi.StorageClass,
	}
	if out.StorageClass == "" {
		out.StorageClass = "STANDARD"
	}
	if len(oi.UserMetadata) > 0 {
		out.Metadata = make(map[string]string, len(oi.UserMetadata))
		for k, v := range oi.UserMetadata {
			out.Metadata[strings.ToLower(k)] = v
		}
	}
	return out
}

// Put implements Store. Objects of unknown size are streamed with multipart.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error) {
	r, done := gate(r)
	defer done()
	po := s.putOpts(opts)
	var ui minio.UploadInfo
	var err error
	if size < 0 {
		ui, err = s.core.Client.PutObject(ctx, s.bucket, key, r, -1, po)
	} else {
		ui, err = s.core.PutObject(ctx, s.bucket, key, r, size, "", "", po)
	}
	if err != nil {
		return ObjectInfo{}, s.wrap("put", key, err)
	}
	return ObjectInfo{
		Key: key, Size: ui.Size, ETag: strings.Trim(ui.ETag, `"`), LastModified: ui.LastModified,
		ContentType: opts.ContentType, StorageClass: storageClass(opts.StorageClass), Metadata: normMeta(opts.Metadata),
	}, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error) {
	var gopts minio.GetObjectOptions
	if opts.Range != nil {
		r := *opts.Range
		if r.Offset < 0 || r.Length == 0 || r.Length < -1 {
			return nil, ObjectInfo{}, fmt.Errorf("s3 get %q: range %d+%d: %w", key, r.Offset, r.Length, ErrInvalidArgument)
		}
		var err error
		switch {
		case r.Length == -1 && r.Offset == 0:
			// The whole object: no Range header at all.
		case r.Length == -1:
			err = gopts.SetRange(r.Offset, 0)
		default:
			err = gopts.SetRange(r.Offset, r.Offset+r.Length-1)
		}
		if err != nil {
			return nil, ObjectInfo{}, fmt.Errorf("s3 get %q: %w: %w", key, ErrInvalidArgument, err)
		}
	}
	if opts.IfMatch != "" {
		if err := gopts.SetMatchETag(opts.IfMatch); err != nil {
			return nil, ObjectInfo{}, fmt.Errorf("s3 get %q: %w: %w", key, ErrInvalidArgument, err)
		}
	}
	rc, oi, hdr, err := s.core.GetObject(ctx, s.bucket, key, gopts)
	if err != nil {
		return nil, ObjectInfo{}, s.wrap("get", key, err)
	}
	info := toInfo(key, oi)
	if cr := hdr.Get("Content-Range"); cr != "" {
		// The response describes the range; report the object's size.
		info.Size = totalSize(cr, info.Size)
	}
	return rc, info, nil
}

// totalSize reads the full object size from a ranged response's
// Content-Range header ("bytes a-b/total").
func totalSize(cr string, fallback int64) int64 {
	if i := strings.LastIndexByte(cr, '/'); i >= 0 {
		var n int64
		if _, err := fmt.Sscan(cr[i+1:], &n); err == nil {
			return n
		}
	}
	return fallback
}

// Head implements Store.
func (s *S3) Head(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("head", key, err)
	}
	return toInfo(key, oi), nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	max := opts.MaxKeys
	if max <= 0 || max > MaxListKeys {
		max = MaxListKeys
	}
	if err := ctx.Err(); err != nil {
		return ListPage{}, err
	}
	res, err := s.core.ListObjectsV2(s.bucket, opts.Prefix, opts.StartAfter, opts.Token, opts.Delimiter, max)
	if err != nil {
		return ListPage{}, s.wrap("list", opts.Prefix, err)
	}
	page := ListPage{Objects: make([]ObjectInfo, 0, len(res.Contents))}
	for _, o := range res.Contents {
		page.Objects = append(page.Objects, toInfo(o.Key, o))
	}
	for _, cp := range res.CommonPrefixes {
		page.CommonPrefixes = append(page.CommonPrefixes, cp.Prefix)
	}
	if res.IsTruncated {
		page.NextToken = res.NextContinuationToken
	}
	return page, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	err := s.core.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		return s.wrap("delete", key, err)
	}
	return nil
}

// DeleteMany implements Store with one multi-object delete request.
func (s *S3) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	if len(keys) > MaxDeleteBatch {
		return nil, fmt.Errorf("s3 delete: %d keys in one batch: %w", len(keys), ErrInvalidArgument)
	}
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		ch <- minio.ObjectInfo{Key: k}
	}
	close(ch)
	var failed map[string]error
	for e := range s.core.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err == nil || minio.ToErrorResponse(e.Err).Code == "NoSuchKey" {
			continue
		}
		if e.ObjectName == "" {
			return failed, s.wrap("delete many", "", e.Err)
		}
		if failed == nil {
			failed = map[string]error{}
		}
		failed[e.ObjectName] = s.wrap("delete", e.ObjectName, e.Err)
	}
	return failed, ctx.Err()
}

// Copy implements Store.
func (s *S3) Copy(ctx context.Context, dst, src string, opts CopyOptions) (ObjectInfo, error) {
	srcOpts := minio.CopySrcOptions{Bucket: s.bucket, Object: src}
	headers := map[string]string{}
	if opts.IfMatch != "" {
		// Core.CopyObject sends only the headers given here.
		headers["x-amz-copy-source-if-match"] = `"` + opts.IfMatch + `"`
	}
	if opts.ReplaceMetadata {
		headers["x-amz-metadata-directive"] = "REPLACE"
		if opts.ContentType != "" {
			headers["Content-Type"] = opts.ContentType
		}
		if opts.StorageClass != "" {
			headers["x-amz-storage-class"] = opts.StorageClass
		}
		for k, v := range opts.Metadata {
			headers["x-amz-meta-"+strings.ToLower(k)] = v
		}
	}
	oi, err := s.core.CopyObject(ctx, s.bucket, src, s.bucket, dst, headers, srcOpts, minio.PutObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("copy", src, err)
	}
	return ObjectInfo{Key: dst, ETag: strings.Trim(oi.ETag, `"`), LastModified: oi.LastModified, Size: oi.Size}, nil
}

// CreateMultipart implements Store.
func (s *S3) CreateMultipart(ctx context.Context, key string, opts PutOptions) (string, error) {
	po := s.putOpts(PutOptions{ContentType: opts.ContentType, StorageClass: opts.StorageClass, Metadata: opts.Metadata})
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, key, po)
	if err != nil {
		return "", s.wrap("create multipart", key, err)
	}
	return id, nil
}

// UploadPart implements Store.
func (s *S3) UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error) {
	r, done := gate(r)
	defer done()
	p, err := s.core.PutObjectPart(ctx, s.bucket, key, uploadID, n, r, size, minio.PutObjectPartOptions{DisableContentSha256: true})
	if err != nil {
		return Part{}, s.wrap("upload part", key, err)
	}
	return Part{Number: n, ETag: strings.Trim(p.ETag, `"`), Size: p.Size}, nil
}

// UploadPartCopy implements Store.
func (s *S3) UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (Part, error) {
	if offset < 0 || length <= 0 {
		return Part{}, fmt.Errorf("s3 upload part copy %q: range %d+%d: %w", key, offset, length, ErrInvalidArgument)
	}
	p, err := s.core.CopyObjectPart(ctx, s.bucket, src, s.bucket, key, uploadID, n, offset, length, nil)
	if err != nil {
		return Part{}, s.wrap("upload part copy", key, err)
	}
	return Part{Number: n, ETag: strings.Trim(p.ETag, `"`), Size: length}, nil
}

// CompleteMultipart implements Store.
func (s *S3) CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error) {
	cps := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		cps[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
	}
	ui, err := s.core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, cps, minio.PutObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.wrap("complete multipart", key, err)
	}
	return ObjectInfo{Key: key, ETag: strings.Trim(ui.ETag, `"`), Size: ui.Size, LastModified: ui.LastModified}, nil
}

// AbortMultipart implements Store.
func (s *S3) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := s.core.AbortMultipartUpload(ctx, s.bucket, key, uploadID); err != nil {
		return s.wrap("abort multipart", key, err)
	}
	return nil
}

// gatedReader stops all reads of a request body once the call that sent it
// has returned. net/http may return a response (an early 412, say) while
// its transport is still reading the body; callers reuse their buffers
// as soon as Put returns, so later reads must not touch them.
type gatedReader struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
}

var errBodyClosed = errors.New("request body read after the request ended")

func (g *gatedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errBodyClosed
	}
	return g.r.Read(p)
}

func (g *gatedReader) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// gatedSeeker adds Seek for bodies that can seek.
type gatedSeeker struct {
	*gatedReader
	s io.Seeker
}

func (g gatedSeeker) Seek(off int64, whence int) (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, errBodyClosed
	}
	return g.s.Seek(off, whence)
}

// gate wraps a request body; the returned func ends all reads of it.
func gate(r io.Reader) (io.Reader, func()) {
	g := &gatedReader{r: r}
	if s, ok := r.(io.Seeker); ok {
		return gatedSeeker{g, s}, g.close
	}
	return g, g.close
}
