package objstore_test

import (
	"context"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/objstore/objstoretest"
	"github.com/sluicegw/sluice/internal/testenv"
)

func TestEmbeddedConformance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		s, err := objstore.OpenEmbedded(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// newMinIOStore returns an S3 store on a fresh bucket of a shared MinIO.
func newMinIOStore(t *testing.T, m *testenv.MinIO, bucket string) *objstore.S3 {
	s, err := objstore.NewS3(objstore.S3Config{
		Endpoint:    m.Endpoint,
		Bucket:      bucket,
		Credentials: staticCreds(m),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	m := testenv.StartMinIO(t)
	n := 0
	objstoretest.Run(t, func(t *testing.T) objstore.Store {
		n++
		return newMinIOStore(t, m, "conf"+string(rune('a'+n/26))+string(rune('a'+n%26)))
	})
}

func staticCreds(m *testenv.MinIO) *credentials.Credentials {
	return credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")
}
