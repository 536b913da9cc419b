// Package objstore is the one interface through which all of Sluice reads and
// writes object storage, with two implementations (an S3 client for any
// S3-compatible endpoint, and an embedded directory-backed store that is the
// daemon's default) and the wrappers that add cross-cutting behaviour: retry
// with backoff, per-request timeouts, a bandwidth limit, metrics and, for
// tests, fault injection. Wrap composes the production stack in one place.
//
// # Errors
//
// Every implementation classifies its errors the same way so callers can act
// on them with errors.Is:
//   - ErrNotFound: the object (or multipart upload) does not exist.
//   - ErrPreconditionFailed: a conditional write or read did not hold.
//   - ErrInvalidArgument: the request itself is wrong (bad key, bad range,
//     bad part list); retrying will not help.
//   - ErrBucketNotFound: the configured bucket does not exist.
//   - anything wrapping ErrTransient (see IsRetryable): the store was
//     unreachable, slow or overloaded; the same request may succeed later.
//
// Other errors are permanent.
package objstore

import (
	"context"
	"io"
	"time"
)

// Store is an object store holding objects under string keys in one bucket.
// Implementations are safe for concurrent use.
//
// Keys are non-empty UTF-8 strings of at most 1,024 bytes. Listings return
// keys in ascending byte order.
type Store interface {
	// Put stores size bytes read from r under key, replacing any existing
	// object unless opts carries a precondition. size may be -1 when unknown
	// (the implementation then buffers or streams as it can). A Put that
	// fails leaves no partial object visible.
	Put(ctx context.Context, key string, r io.Reader, size int64, opts PutOptions) (ObjectInfo, error)
	// Get opens the object for reading. With opts.Range set it reads only
	// that byte range. The caller must close the reader.
	Get(ctx context.Context, key string, opts GetOptions) (io.ReadCloser, ObjectInfo, error)
	// Head returns an object's information without its data.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns one page of keys under opts.Prefix in ascending order.
	List(ctx context.Context, opts ListOptions) (ListPage, error)
	// Delete removes an object. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// DeleteMany removes several objects (up to 1,000 per call) and returns
	// the keys it could not delete with their errors; the error result is
	// for failures of the call as a whole.
	DeleteMany(ctx context.Context, keys []string) (map[string]error, error)
	// Copy copies the object src to dst inside the store without moving
	// the data through the caller.
	Copy(ctx context.Context, dst, src string, opts CopyOptions) (ObjectInfo, error)
	Multipart
	// Kind names the implementation ("embedded", "s3") for status output.
	Kind() string
}

// Multipart is the multipart-upload part of Store, for objects too large for
// one Put and for objects assembled from ranges of other objects.
type Multipart interface {
	// CreateMultipart starts a multipart upload and returns its id.
	CreateMultipart(ctx context.Context, key string, opts PutOptions) (uploadID string, err error)
	// UploadPart stores part number n (1-10,000) of an upload. Every part
	// but the last must be at least MinPartSize bytes.
	UploadPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) (Part, error)
	// UploadPartCopy stores part number n as the byte range
	// [offset, offset+length) of the existing object src.
	UploadPartCopy(ctx context.Context, key, uploadID string, n int, src string, offset, length int64) (Part, error)
	// CompleteMultipart assembles the listed parts, in ascending part
	// number order, into the object.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (ObjectInfo, error)
	// AbortMultipart discards an upload and its parts.
	AbortMultipart(ctx context.Context, key, uploadID string) error
}

// MinPartSize is the smallest size of a multipart part other than the last,
// as S3 defines it.
const MinPartSize = 5 << 20

// MaxDeleteBatch is the largest number of keys DeleteMany takes in one call.
const MaxDeleteBatch = 1000

// MaxListKeys is the largest page List returns.
const MaxListKeys = 1000

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string // without quotes
	LastModified time.Time
	ContentType  string
	StorageClass string
	// Metadata is the user metadata, with keys in canonical lower case and
	// without the "x-amz-meta-" prefix. List results do not carry it.
	Metadata map[string]string
}

// PutOptions are the optional attributes and preconditions of a write.
type PutOptions struct {
	ContentType  string
	StorageClass string
	// Metadata is user metadata stored with the object; keys are
	// case-insensitive and stored in lower case.
	Metadata map[string]string
	// IfNoneMatch makes the write succeed only when no object exists
	// under the key (S3 "If-None-Match: *").
	IfNoneMatch bool
	// IfMatch makes the write succeed only when the current object has
	// this ETag.
	IfMatch string
}

// GetOptions select what Get returns.
type GetOptions struct {
	// Range, when non-nil, limits the read to a byte range.
	Range *Range
	// IfMatch makes the read fail with ErrPreconditionFailed unless the
	// object has this ETag (used to resume a cut stream safely).
	IfMatch string
}

// Range is a byte range of an object. Length -1 means to the end.
type Range struct {
	Offset int64
	Length int64
}

// ListOptions select one page of a listing.
type ListOptions struct {
	Prefix string
	// Delimiter, when set, groups keys that contain it after the prefix
	// into CommonPrefixes (directories when it is "/").
	Delimiter string
	// StartAfter lists only keys (and common prefixes) after this one.
	StartAfter string
	// Token continues a listing from the NextToken of the previous page.
	Token string
	// MaxKeys bounds the page (keys plus common prefixes); 0 or more than
	// MaxListKeys means MaxListKeys.
	MaxKeys int
}

// ListPage is one page of a listing.
type ListPage struct {
	Objects        []ObjectInfo
	CommonPrefixes []string
	// NextToken is non-empty when more results follow; pass it as Token.
	NextToken string
}

// CopyOptions control a server-side copy.
type CopyOptions struct {
	// ReplaceMetadata replaces the metadata, content type and storage
	// class with the ones below instead of copying the source's.
	ReplaceMetadata bool
	ContentType     string
	StorageClass    string
	Metadata        map[string]string
	// IfMatch makes the copy fail unless the source has this ETag.
	IfMatch string
}

// Part identifies an uploaded part of a multipart upload.
type Part struct {
	Number int
	ETag   string
	Size   int64
}

// ListAll calls fn for every object under prefix (no delimiter), page by
// page, until fn returns an error or the listing ends.
func ListAll(ctx context.Context, s Store, prefix string, fn func(ObjectInfo) error) error {
	opts := ListOptions{Prefix: prefix}
	for {
		page, err := s.List(ctx, opts)
		if err != nil {
			return err
		}
		for _, o := range page.Objects {
			if err := fn(o); err != nil {
				return err
			}
		}
		if page.NextToken == "" {
			return nil
		}
		opts.Token = page.NextToken
	}
}
