package blockcache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// seededBytes fills p with a keystream derived from seed (AES-CTR: cheap
// even under the race detector, and different for every seed).
func seededBytes(p []byte, seed uint64) {
	var key [16]byte
	binary.BigEndian.PutUint64(key[:], seed)
	binary.BigEndian.PutUint64(key[8:], ^seed)
	blk, _ := aes.NewCipher(key[:])
	clear(p)
	cipher.NewCTR(blk, make([]byte, 16)).XORKeyStream(p, p)
}

const (
	killChildEnv   = "SLUICE_CACHED_KILL_CHILD"
	ckillBlock     = 256 << 10
	ckillVolSize   = 64 << 20
	ckillCacheSize = 8 << 20
)

// killWriteBlock is the block write number seq goes to: a fixed sequence,
// so the parent knows it without being told.
func killWriteBlocks(n int) []int64 {
	r := rand.New(rand.NewPCG(42, 42))
	out := make([]int64, n)
	for i := range out {
		out[i] = r.Int64N(ckillVolSize / ckillBlock)
	}
	return out
}

// killOpen opens the store and cache under root; rules are installed in
// the store before the cache starts uploading.
func killOpen(t testing.TB, root string, rules ...objstore.FaultRule) (*env, *Cache, CacheConfig) {
	t.Helper()
	e := embeddedEnv(t, filepath.Join(root, "store"))
	for _, r := range rules {
		e.faults.Add(r)
	}
	cfg := CacheConfig{Size: ckillCacheSize, SlotSize: ckillBlock, DirtyWindow: 50 * time.Millisecond, RetryDelay: 10 * time.Millisecond, Uploaders: 4}
	c, err := OpenCache(filepath.Join(root, "cache"), e.cat, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e, c, cfg
}

// TestCachedKill9 runs a writer in a child process (this test binary
// re-executed) that writes whole blocks with FUA or Flush checkpoints and
// reports on stdout every write that returned ("D seq") and every point
// where all earlier writes were durable ("A seq"). The parent kills it
// with SIGKILL in the middle, reopens the cache and volume, and checks
// each block: it holds the last write acknowledged durable, or a later
// one (never an older one, never garbage), except the block of the one
// write in flight, which may be torn. Then every dirty block from before
// the crash is uploaded, and the blocks read back the same from the
// store.
func TestCachedKill9(t *testing.T) {
	if root := os.Getenv(killChildEnv); root != "" {
		killWriter(t, root)
		return
	}
	root := t.TempDir()
	// The volume exists before the child starts.
	e, c, _ := killOpen(t, root)
	v, err := CreateCached(filepath.Join(root, "vol"), c, CachedConfig{Name: "k", Size: ckillVolSize, BlockSize: ckillBlock, Codec: snapshot.CodecNone}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	c.Close()
	_ = e

	cmd := exec.Command(os.Args[0], "-test.run=^TestCachedKill9$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+root)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu         sync.Mutex
		acked      = -1
		done       = -1
		readerDone = make(chan struct{})
	)
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				continue
			}
			mu.Lock()
			switch f[0] {
			case "A":
				acked = n
			case "D":
				done = n
			}
			mu.Unlock()
		}
	}()
	// Let it write well past the cache size (eviction, back-pressure).
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		a := acked
		mu.Unlock()
		if a >= 150 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child acknowledged only %d writes:\n%s", a, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	<-readerDone
	t.Logf("killed after %d writes returned, %d acknowledged durable", done+1, acked+1)

	// Uploads fail until the first check is done: the dirty blocks found
	// at restart are still dirty then.
	e, c, _ = killOpen(t, root, objstore.FaultRule{Op: objstore.OpPut, Err: objstore.ErrInjected})
	defer c.Close()
	v, err = OpenCached(filepath.Join(root, "vol"), c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	blocks := killWriteBlocks(done + 2)
	check := func(what string) {
		t.Helper()
		ctx := ctxT(t)
		got, want := make([]byte, ckillBlock), make([]byte, ckillBlock)
		for b := int64(0); b < ckillVolSize/ckillBlock; b++ {
			if err := v.ReadAt(ctx, got, b*ckillBlock); err != nil {
				t.Fatalf("%s: block %d: %v", what, b, err)
			}
			// Candidates: the last durable write to b (or zeros), then
			// every later write to b.
			last := -1
			var later []int
			for s := 0; s < len(blocks); s++ {
				if blocks[s] != b {
					continue
				}
				if s <= acked {
					last = s
				} else {
					later = append(later, s)
				}
			}
			ok := false
			for _, s := range append([]int{last}, later...) {
				if s < 0 {
					clear(want)
				} else {
					seededBytes(want, uint64(s))
				}
				if bytes.Equal(got, want) {
					ok = true
					break
				}
			}
			inFlight := done+1 < len(blocks) && blocks[done+1] == b
			if !ok && !inFlight {
				t.Fatalf("%s: block %d holds none of the writes it may hold (last durable write %d, later %v)", what, b, last, later)
			}
		}
	}
	check("after restart")
	in := v.Info()
	t.Logf("after restart: %d dirty blocks to upload, %d cached", in.DirtyBlocks, in.CachedBlocks)
	if in.DirtyBlocks == 0 {
		t.Error("no dirty block survived the crash: the test did not exercise the upload of old dirty blocks")
	}
	e.faults.Clear()
	if err := c.WaitUploaded(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.DropClean(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	check("from the store")
}

// killWriter is the child: it writes block-sized writes forever.
func killWriter(t *testing.T, root string) {
	// A slow store: the upload buffer fills and writers wait for it.
	_, c, _ := killOpen(t, root, objstore.FaultRule{Op: objstore.OpPut, Latency: 20 * time.Millisecond})
	v, err := OpenCached(filepath.Join(root, "vol"), c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	blocks := killWriteBlocks(100000)
	p := make([]byte, ckillBlock)
	for s, b := range blocks {
		seededBytes(p, uint64(s))
		fua := s%8 == 7
		if err := v.WriteAt(ctx, p, b*ckillBlock, fua); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(out, "D %d\n", s)
		if s%20 == 19 {
			if err := v.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			fua = true
		}
		if fua {
			fmt.Fprintf(out, "A %d\n", s)
		}
		out.Flush()
	}
}
