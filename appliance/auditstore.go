package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/internal/objstore"
)

// auditUploader delivers the audit trail to the object store under a
// prefix and reads it back for verification (audit.Uploader and
// audit.Source).
type auditUploader struct {
	store  objstore.Store
	prefix string
}

var (
	_ audit.Uploader = auditUploader{}
	_ audit.Source   = auditUploader{}
)

func (u auditUploader) Upload(ctx context.Context, name string, data []byte) error {
	_, err := u.store.Put(ctx, u.prefix+name, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: "application/x-ndjson"})
	return err
}

func (u auditUploader) Names(ctx context.Context) ([]string, error) {
	var names []string
	err := objstore.ListAll(ctx, u.store, u.prefix, func(o objstore.ObjectInfo) error {
		if n := strings.TrimPrefix(o.Key, u.prefix); !strings.Contains(n, "/") {
			names = append(names, n)
		}
		return nil
	})
	return names, err
}

func (u auditUploader) Read(ctx context.Context, name string) ([]byte, error) {
	rc, _, err := u.store.Get(ctx, u.prefix+name, objstore.GetOptions{})
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
