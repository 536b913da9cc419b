package blockcache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

	"github.com/sluicegw/sluice/blockcache/blockcachetest"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

// TestFailpointsThenReopen simulates a crash at each durability boundary
// of a snapshot (volume side and catalogue side), reopens the volume and the
// catalogue, and checks that the snapshot completes with the right image,
// that no acknowledged write is lost and that the next snapshot is
// incremental again.
func TestFailpointsThenReopen(t *testing.T) {
	points := []string{
		"stored.snapshot-pending", "stored.cow-copied",
		"create.chunks-stored", "create.manifest-written", "create.committed",
		"stored.base-updated",
	}
	for _, fp := range points {
		t.Run(fp, func(t *testing.T) {
			ctx := ctxT(t)
			root := t.TempDir()
			storeDir, volDir := filepath.Join(root, "store"), filepath.Join(root, "vol")
			var armed sync.Map
			armed.Store(fp, true)
			hook := func(name string) error {
				if _, ok := armed.LoadAndDelete(name); ok {
					return snapshot.ErrFailpoint
				}
				return nil
			}
			base, err := objstore.OpenEmbedded(storeDir)
			if err != nil {
				t.Fatal(err)
			}
			e := wrapEnv(t, base, snapshot.Options{Failpoint: hook})
			v, err := CreateStored(volDir, StoredConfig{Name: "v", Size: 2 << 20, BlockSize: snapshot.MinBlockSize}, Options{Failpoint: hook})
			if err != nil {
				t.Fatal(err)
			}
			m := &model{v: v, want: make([]byte, 2<<20)}
			r := rand.New(rand.NewPCG(5, 5))
			for k := 0; k < 12; k++ {
				m.write(t, r, int64(k)*150000, 9000, k%2)
			}
			want := m.image()
			var snapErr error
			if fp == "stored.cow-copied" {
				// Crash during copy-on-write: a write lands while the
				// snapshot is pending (the upload is stalled).
				// Every put after the pending entry (put 1) fails:
				// chunk uploads and the attempts to record the failure.
				for n := 2; n <= 200; n++ {
					e.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Nth: n, Err: objstore.ErrInjected})
				}
				_, snapErr = v.Snapshot(ctx, e.cat, SnapshotRequest{})
				if snapErr == nil || v.Info().PendingSnapshot == "" {
					t.Fatalf("snapshot through an outage: %v, %+v", snapErr, v.Info())
				}
				p := bytes.Repeat([]byte{0xee}, 4096)
				if err := v.WriteAt(ctx, p, 0, true); !errors.Is(err, snapshot.ErrFailpoint) {
					t.Fatalf("write at the cow failpoint: %v", err)
				}
			} else {
				_, snapErr = v.Snapshot(ctx, e.cat, SnapshotRequest{})
				if !errors.Is(snapErr, snapshot.ErrFailpoint) {
					t.Fatalf("snapshot: %v", snapErr)
				}
			}
			// "Crash": drop the handles without any cleanup.
			v.data.Close()
			v.changed.Close()
			e.faults.Clear()

			e2 := embeddedEnv(t, storeDir)
			v2, err := OpenStored(volDir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v2.Close()
			if d := firstDiff(volumeBytes(t, v2), want); d >= 0 {
				t.Fatalf("acknowledged write lost at %d", d)
			}
			var id string
			if pending := v2.Info().PendingSnapshot; pending != "" {
				in, ok, err := v2.ResumeSnapshot(ctx, e2.cat)
				if err != nil || !ok || in.Status != snapshot.StatusCompleted {
					t.Fatalf("resume: %+v %v %v", in, ok, err)
				}
				id = in.ID
			} else {
				// The crash happened before the pending state was
				// committed: a new snapshot takes it all.
				in, err := v2.Snapshot(ctx, e2.cat, SnapshotRequest{})
				if err != nil {
					t.Fatal(err)
				}
				id = in.ID
			}
			if _, img := restoreVolume(t, e2, id); firstDiff(img, want) >= 0 {
				t.Fatalf("snapshot after %s differs at %d", fp, firstDiff(img, want))
			}
			if in := v2.Info(); in.Base != id || in.PendingSnapshot != "" {
				t.Fatalf("volume state after resume: %+v", in)
			}
			m.v = v2
			m.write(t, r, 100, 10, 0)
			s2, err := v2.Snapshot(ctx, e2.cat, SnapshotRequest{})
			// Blocks of the crashed snapshot may be read again (the
			// crash may precede clearing the changed set), but only the
			// new write is uploaded.
			if err != nil || s2.Parent != id || s2.ChunksUploaded != 1 {
				t.Fatalf("next snapshot: %+v %v", s2, err)
			}
			if _, img := restoreVolume(t, e2, s2.ID); firstDiff(img, m.image()) >= 0 {
				t.Fatal("next snapshot differs")
			}
			checkCatalog(t, e2)
			list, _ := e2.cat.List(ctx, snapshot.ListFilter{})
			for _, in := range list {
				if in.Status == snapshot.StatusError {
					t.Errorf("snapshot %s failed: %s", in.ID, in.Error)
				}
			}
		})
	}
}

// TestPermanentFailureMergesChanges: a snapshot that fails for good gives
// its blocks back to the changed set.
func TestPermanentFailureMergesChanges(t *testing.T) {
	ctx := ctxT(t)
	e := embeddedEnv(t, "")
	m := newModel(t, filepath.Join(t.TempDir(), "vol"), 1<<20, snapshot.MinBlockSize, snapshot.CodecZstd)
	r := rand.New(rand.NewPCG(8, 8))
	m.write(t, r, 0, 200000, 0)
	e.faults.Add(objstore.FaultRule{Op: objstore.OpPut, Nth: 2, Err: errors.New("access denied")})
	if _, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{}); err == nil {
		t.Fatal("snapshot succeeded")
	}
	if in := m.v.Info(); in.PendingSnapshot != "" || in.ChangedBlocks != 4 {
		t.Fatalf("after a failed snapshot: %+v", in)
	}
	e.faults.Clear()
	s, err := m.v.Snapshot(ctx, e.cat, SnapshotRequest{})
	if err != nil || s.BlocksRead != 4 {
		t.Fatalf("retry: %+v %v", s, err)
	}
}

const childEnv = "SLUICE_BLOCKCACHE_KILL_CHILD"

// TestKillDuringSnapshot runs a snapshot in a child process (this test
// binary re-executed), kills it with SIGKILL in the middle of the upload
// while another goroutine is writing, then reopens the volume and the
// catalogue: the snapshot completes with a point-in-time image, and every
// write the child acknowledged (after Flush) is in the volume.
// killPacksEnv tells the child to pack every chunk it uploads.
const killPacksEnv = "SLUICE_BLOCKCACHE_KILL_PACKS"

// killOptions are the catalogue options of the child and of the parent's
// resume: packs makes every run pack its chunks into small packs.
func killOptions(packs bool) snapshot.Options {
	if !packs {
		return snapshot.Options{Concurrency: 2}
	}
	return snapshot.Options{Concurrency: 2, PackSize: 4 * snapshot.MinBlockSize, PackMinBytes: 1}
}

// TestKillDuringSnapshot SIGKILLs a child process in the middle of a
// snapshot upload while it writes, with chunks stored as objects and packed.
func TestKillDuringSnapshot(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		killChild(t, dir, os.Getenv(killPacksEnv) != "")
		return
	}
	t.Run("objects", func(t *testing.T) { testKillDuringSnapshot(t, false) })
	t.Run("packs", func(t *testing.T) { testKillDuringSnapshot(t, true) })
}

func testKillDuringSnapshot(t *testing.T, packs bool) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringSnapshot$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+root)
	if packs {
		cmd.Env = append(cmd.Env, killPacksEnv+"=1")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the snapshot is uploading.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n := countFiles(filepath.Join(root, "store", "objects")); n > 10 && logHas(filepath.Join(root, "ack.log"), "S") {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child never got to the upload:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	ctx := ctxT(t)
	st, err := objstore.OpenEmbedded(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	e := wrapEnv(t, st, killOptions(packs))
	v, err := OpenStored(filepath.Join(root, "vol"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	acked, beforeSnap := readAcks(t, filepath.Join(root, "ack.log"))
	base, slots, writes := childData()
	cur := volumeBytes(t, v)
	for i := 0; i < acked; i++ {
		off := int64(slots[i]) * 4096
		if !bytes.Equal(cur[off:off+4096], writes[i]) {
			t.Fatalf("acknowledged write %d (of %d) lost", i, acked)
		}
	}
	if v.Info().PendingSnapshot == "" {
		t.Fatalf("no pending snapshot after the kill:\n%s", out.String())
	}
	in, _, err := v.ResumeSnapshot(ctx, e.cat)
	if err != nil || in.Status != snapshot.StatusCompleted {
		t.Fatalf("resume: %+v %v", in, err)
	}
	_, img := restoreVolume(t, e, in.ID)
	k := 0
	for ; k < len(slots); k++ {
		off := int64(slots[k]) * 4096
		if !bytes.Equal(img[off:off+4096], writes[k]) {
			break
		}
	}
	if k < beforeSnap {
		t.Fatalf("snapshot misses write %d acknowledged before it (%d)", k, beforeSnap)
	}
	exp := bytes.Clone(base)
	for i := 0; i < k; i++ {
		copy(exp[int64(slots[i])*4096:], writes[i])
	}
	if d := firstDiff(img, exp); d >= 0 {
		t.Fatalf("resumed snapshot is not a point-in-time image (differs at %d, prefix %d)", d, k)
	}
	checkCatalog(t, e)
	t.Logf("killed child: %d writes acknowledged, %d before the snapshot, snapshot holds %d; %d packs, %d chunk objects",
		acked, beforeSnap, k, e.countObjects(t, "packs/"), e.countObjects(t, "chunks/"))
}

const killVolSize = 8 << 20

// childData is the deterministic content the child writes: the initial
// image, the order of 4 KiB slots the writer goroutine overwrites, and
// their contents.
func childData() (base []byte, slots []int, writes [][]byte) {
	r := rand.New(rand.NewPCG(77, 78))
	base = make([]byte, killVolSize)
	for off := 0; off < killVolSize; off += snapshot.MinBlockSize {
		blockcachetest.Fill(r, base[off:off+snapshot.MinBlockSize], (off/snapshot.MinBlockSize)%2)
	}
	slots = r.Perm(killVolSize / 4096)[:400]
	writes = make([][]byte, len(slots))
	for i := range writes {
		writes[i] = make([]byte, 4096)
		blockcachetest.Fill(r, writes[i], 0)
	}
	return base, slots, writes
}

// killChild is the child side: it writes, starts a slow snapshot with a
// writer running, and logs each acknowledged write; it never returns
// normally (the parent kills it).
func killChild(t *testing.T, root string, packs bool) {
	ctx := context.Background()
	base, err := objstore.OpenEmbedded(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	fs := objstore.NewFaultStore(base)
	cat, err := snapshot.Open(fs, killOptions(packs))
	if err != nil {
		t.Fatal(err)
	}
	v, err := CreateStored(filepath.Join(root, "vol"), StoredConfig{Name: "killed", Size: killVolSize, BlockSize: snapshot.MinBlockSize}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	img, slots, writes := childData()
	if err := v.WriteAt(ctx, img, 0, false); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(root, "ack.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ack := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(log, line)
		log.Sync()
	}
	started := make(chan struct{})
	go func() {
		for i := range slots {
			if i == 20 {
				close(started)
			}
			if err := v.WriteAt(ctx, writes[i], int64(slots[i])*4096, false); err != nil {
				panic(err)
			}
			if err := v.Flush(ctx); err != nil {
				panic(err)
			}
			ack("w " + strconv.Itoa(i))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	<-started
	fs.Add(objstore.FaultRule{Op: objstore.OpPut, Latency: 15 * time.Millisecond})
	mu.Lock()
	fmt.Fprintln(log, "S")
	log.Sync()
	mu.Unlock()
	_, err = v.Snapshot(ctx, cat, SnapshotRequest{})
	t.Fatalf("child snapshot finished before the kill: %v", err)
}

// readAcks returns the number of acknowledged writes and how many of them
// were acknowledged before the snapshot started.
func readAcks(t *testing.T, path string) (acked, beforeSnap int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	beforeSnap = -1
	for sc.Scan() {
		line := sc.Text()
		if line == "S" {
			beforeSnap = acked
			continue
		}
		if n, ok := strings.CutPrefix(line, "w "); ok {
			i, err := strconv.Atoi(n)
			if err != nil || i != acked {
				continue // a torn last line
			}
			acked++
		}
	}
	return acked, beforeSnap
}

func logHas(path, line string) bool {
	b, _ := os.ReadFile(path)
	return bytes.Contains(b, []byte("\n"+line+"\n")) || bytes.HasPrefix(b, []byte(line+"\n"))
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
