package nfs

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/internal/testenv"
)

// childEnv makes the test binary run as an NFS server process (see
// runChild) instead of running tests.
const childEnv = "SLUICE_NFS_TEST_CHILD"

// runChild serves one share of an S3 bucket described by the environment
// and prints "PORT <n>" once listening; it runs until killed. With
// SLUICE_CHILD_FAIL_UPLOADS=1 every upload fails, so committed data can
// only survive in the cache.
func runChild() {
	env := func(k string) string { return os.Getenv("SLUICE_CHILD_" + k) }
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: env("ENDPOINT"), Bucket: env("BUCKET"),
		Credentials: credentials.NewStaticV4(env("ACCESS"), env("SECRET"), "")})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	opts := objstore.Options{}
	if env("FAIL_UPLOADS") == "1" {
		opts.Faults = func(s objstore.Store) objstore.Store {
			f := objstore.NewFaultStore(s)
			for _, op := range []string{objstore.OpPut, objstore.OpCreateMultipart, objstore.OpCopy} {
				f.Add(objstore.FaultRule{Op: op, Err: fmt.Errorf("uploads disabled: %w", objstore.ErrInvalidArgument)})
			}
			return f
		}
	}
	store := objstore.Wrap(s3, opts)
	srv, err := NewServer(Config{StateDir: env("STATE"), CacheDir: env("CACHE"), SettleTime: time.Hour})
	if err == nil {
		err = srv.AddShare(Share{Name: "share", Store: store, Squash: NoSquash,
			AllowedClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	}
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	go srv.Serve(ln)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	os.Exit(0)
}

// child is a server process started by startChild.
type child struct {
	cmd  *exec.Cmd
	port int
}

// startChild starts the test binary as a server for m's bucket on the given
// state and cache directories.
func startChild(t *testing.T, m *testenv.MinIO, dir string, failUploads bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"SLUICE_CHILD_ENDPOINT="+m.Endpoint, "SLUICE_CHILD_BUCKET="+m.Bucket,
		"SLUICE_CHILD_ACCESS="+m.AccessKey, "SLUICE_CHILD_SECRET="+m.SecretKey,
		"SLUICE_CHILD_STATE="+dir+"/state", "SLUICE_CHILD_CACHE="+dir+"/cache")
	if failUploads {
		cmd.Env = append(cmd.Env, "SLUICE_CHILD_FAIL_UPLOADS=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if _, serr := fmt.Sscanf(strings.TrimSpace(line), "PORT %d", &c.port); err != nil || serr != nil {
		t.Fatalf("child server: %q %v %v", line, err, serr)
	}
	return c
}

func (c *child) url(path string) string {
	return fmt.Sprintf("nfs://127.0.0.1/share/%s?nfsport=%d&mountport=%d", path, c.port, c.port)
}

// kill9 kills the child with SIGKILL and reaps it.
func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

// deadline returns a channel closed after d, for polling loops.
func deadline(d time.Duration) <-chan time.Time { return time.After(d) }
