package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a real MinIO server started for a test on a random loopback port,
// with its data in a temporary directory.
type MinIO struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// Bucket was created for the test.
	Bucket string

	bin  string
	dir  string
	addr string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	t    testing.TB
}

// StartMinIO starts a MinIO server for the test, creates a bucket, and
// stops the server when the test ends. The binary comes from MINIO_BIN, PATH
// or the tool cache; when it is missing the test fails under CI=true and is
// skipped elsewhere.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := RequireTool(t, "minio")
	m := &MinIO{
		bin: bin, dir: t.TempDir(), t: t,
		AccessKey: "sluicetest", SecretKey: "sluicetest-secret-key",
		Bucket: "sluice-test",
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		m.addr = freeAddr(t)
		m.Endpoint = "http://" + m.addr
		if lastErr = m.Start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting minio: %v", lastErr)
	}
	t.Cleanup(m.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Client(t).MakeBucket(ctx, m.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	return m
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start (re)starts the server on its address and data directory and waits
// until it is ready. Tests use Stop and Start to simulate an outage.
func (m *MinIO) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	console := freeAddr(m.t)
	cmd := exec.Command(m.bin, "server", "--quiet", "--address", m.addr, "--console-address", console, filepath.Join(m.dir, "data"))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1",
	)
	logf, err := os.OpenFile(filepath.Join(m.dir, "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(m.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(m.dir, "minio.log"))
			return fmt.Errorf("minio exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("minio on %s not ready after 30s", m.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.cmd, m.done = cmd, done
	return nil
}

// Stop stops the server (the data directory stays for a later Start).
func (m *MinIO) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// Client returns a minio-go client with the root credentials, for tests that
// look at the bucket directly.
func (m *MinIO) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Env returns environment variables that point Sluice's S3 store at this
// server (credentials as the standard AWS variables).
func (m *MinIO) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + m.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + m.SecretKey,
		"AWS_REGION=us-east-1",
	}
}

// Port returns the server's TCP port.
func (m *MinIO) Port() int {
	_, p, _ := net.SplitHostPort(m.addr)
	n, _ := strconv.Atoi(p)
	return n
}
