package appliance

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluicegw/sluice/control/api"
	"github.com/sluicegw/sluice/control/audit"
	"github.com/sluicegw/sluice/control/client"
	"github.com/sluicegw/sluice/internal/objstore"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAuditTrailEndToEnd performs management calls against a daemon on a
// real MinIO, then checks the records (who, what, where), that no secret
// reached the trail or the log, that the sealed trail reached the bucket,
// and that both copies verify.
func TestAuditTrailEndToEnd(t *testing.T) {
	cfg, m := minioConfig(t)
	var logs syncBuffer
	d, err := New(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	opts, _ := client.Resolve(client.Options{Endpoint: d.ControlAddr(), DataDir: cfg.DataDir})
	c := client.New(opts)

	const chapSecret = "very-secret-chap-1"
	if _, err := c.CreateVolume(ctx, api.CreateVolume{Name: "audited", SizeBytes: 8 << 20, CHAPUser: "u", CHAPSecret: chapSecret}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(ctx, api.CreateToken{Name: "backup-job", Role: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	bad := client.New(client.Options{Endpoint: opts.Endpoint, Token: "sluice_000000000000.AAAA"})
	if _, err := bad.Gateway(ctx); err == nil {
		t.Fatal("bad token accepted")
	}
	ev, err := c.AuditEvents(ctx, map[string][]string{"name": {"CreateVolume"}})
	if err != nil || len(ev.Events) != 1 {
		t.Fatalf("CreateVolume records: %v %v", ev, err)
	}
	var rec audit.Record
	_ = json.Unmarshal(ev.Events[0], &rec)
	if rec.Identity.Type != "token" || rec.Identity.Role != "admin" || rec.SourceAddr != "127.0.0.1" ||
		rec.Resource != "volumes/audited" || rec.Result != audit.Success || rec.RequestID == "" {
		t.Fatalf("record %+v", rec)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	secrets := []string{chapSecret, tok.Token, strings.TrimSpace(readFile(t, filepath.Join(cfg.DataDir, "admin.token")))}
	trail := ""
	names, _ := os.ReadDir(filepath.Join(cfg.DataDir, "audit"))
	for _, n := range names {
		if n.Name() != "signing.key" {
			trail += readFile(t, filepath.Join(cfg.DataDir, "audit", n.Name()))
		}
	}
	for _, s := range secrets {
		if strings.Contains(trail, s) {
			t.Errorf("a secret (%d bytes) is in the audit trail", len(s))
		}
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret (%d bytes) is in the daemon log", len(s))
		}
	}
	for _, want := range []string{"CreateVolume", "CreateToken", "AuthenticationFailed", "Shutdown", audit.Redacted} {
		if !strings.Contains(trail, want) {
			t.Errorf("trail lacks %q", want)
		}
	}
	rep, err := audit.Verify(context.Background(), audit.DirSource(filepath.Join(cfg.DataDir, "audit")), nil)
	if err != nil || !rep.OK {
		t.Fatalf("local trail: %+v %v", rep, err)
	}
	// The sealed trail reached the bucket and verifies there with the
	// local key.
	var objs int
	for o := range m.Client(t).ListObjects(context.Background(), m.Bucket, minio.ListObjectsOptions{Prefix: "sluice-audit/"}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		objs++
	}
	if objs < 3 {
		t.Fatalf("%d audit objects in the bucket, want segment, digest and key", objs)
	}
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, Bucket: m.Bucket, Credentials: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	local, _ := os.ReadFile(filepath.Join(cfg.DataDir, "audit", audit.PublicKeyFile))
	pub, _ := hex.DecodeString(strings.TrimSpace(string(local)))
	brep, err := audit.Verify(context.Background(), auditUploader{store: s3, prefix: "sluice-audit/"}, pub)
	if err != nil || !brep.OK || brep.Records != rep.Records {
		t.Fatalf("bucket trail: %+v %v (local has %d records)", brep, err, rep.Records)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
