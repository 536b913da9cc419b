// Command snapgen is the helper of bench/snapshot.sh: it generates a
// seeded test image (a mix of random, text-like and zero blocks), applies
// the same seeded change to the image file and to a stored volume, and runs
// Sluice's snapshot and restore against an S3 endpoint, printing one JSON
// line of figures per run.
//
//	snapgen gen      -out IMG -size 1G -seed 1
//	snapgen import   -img IMG -vol DIR [-codec zstd] [-block 1M]
//	snapgen mutate   -img IMG -vol DIR -pct 1 -seed 2
//	snapgen snapshot -vol DIR S3FLAGS
//	snapgen restore  -out FILE [-id ID] S3FLAGS
//	snapgen du       [-prefix P] S3FLAGS
//	snapgen mkbucket S3FLAGS
//	snapgen blocksize -img IMG -dir DIR S3FLAGS
//
// S3FLAGS are -endpoint URL -bucket NAME; credentials come from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/blockcache"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/snapshot"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: snapgen gen|import|mutate|snapshot|restore|du|mkbucket|blocksize [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "gen":
		err = runGen(args)
	case "import":
		err = runImport(ctx, args)
	case "mutate":
		err = runMutate(ctx, args)
	case "snapshot":
		err = runSnapshot(ctx, args)
	case "restore":
		err = runRestore(ctx, args)
	case "du":
		err = runDU(ctx, args)
	case "mkbucket":
		err = runMkbucket(ctx, args)
	case "blocksize":
		err = runBlockSize(ctx, args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapgen:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

const genBlock = 1 << 20

var words = strings.Fields(`the of and to in is was for on that with as by at from his her which or
it be this an are not have had were but they their one all has been its more when who will there
block volume snapshot chunk gateway storage sluice object bucket manifest restore error status
2026-11-25T21:37:07Z INFO request id=7f3a latency_ms=12 bytes=4096 GET PUT 200 404 user=admin`)

// fillBlock fills p with block kind k: 0 random, 1 text-like, 2 zeros.
func fillBlock(r *rand.Rand, p []byte, k int) {
	switch k {
	case 0:
		for i := 0; i+8 <= len(p); i += 8 {
			v := r.Uint64()
			p[i], p[i+1], p[i+2], p[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			p[i+4], p[i+5], p[i+6], p[i+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
		}
	case 1:
		i := 0
		for i < len(p) {
			v := r.Uint64()
			for k := 0; k < 4 && i < len(p); k++ {
				i += copy(p[i:], words[int(v&0xffff)%len(words)])
				if i < len(p) {
					if v&0x70000 == 0 {
						p[i] = '\n'
					} else {
						p[i] = ' '
					}
					i++
				}
				v >>= 20
			}
		}
	default:
		clear(p)
	}
}

// kindOf picks a block's kind: 40% random, 40% text, 20% zero.
func kindOf(r *rand.Rand) int {
	switch x := r.IntN(10); {
	case x < 4:
		return 0
	case x < 8:
		return 1
	}
	return 2
}

func runGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "", "image file to write")
	sizeS := fs.String("size", "1G", "image size")
	seed := fs.Uint64("seed", 1, "generator seed")
	fs.Parse(args)
	size, err := parseSize(*sizeS)
	if err != nil || *out == "" || size%genBlock != 0 {
		return fmt.Errorf("gen: need -out and a size that is a multiple of 1M")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(*seed, 0x51))
	p := make([]byte, genBlock)
	for off := int64(0); off < size; off += genBlock {
		k := kindOf(r)
		if k == 2 {
			continue // a hole
		}
		fillBlock(r, p, k)
		if _, err := f.WriteAt(p, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

func codecFlag(fs *flag.FlagSet) *string {
	return fs.String("codec", "zstd", "chunk codec: zstd, lz4 or none")
}

func runImport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("import", flag.ExitOnError)
	img := fs.String("img", "", "image file")
	vol := fs.String("vol", "", "volume directory to create")
	codecS := codecFlag(fs)
	blockS := fs.String("block", "1M", "block size")
	fs.Parse(args)
	codec, err := snapshot.ParseCodec(*codecS)
	if err != nil {
		return err
	}
	bs, err := parseSize(*blockS)
	if err != nil {
		return err
	}
	v, err := importImage(ctx, *img, *vol, codec, int(bs))
	if err != nil {
		return err
	}
	return v.Close()
}

// importImage creates a stored volume holding the image's non-zero blocks.
func importImage(ctx context.Context, img, dir string, codec snapshot.Codec, bs int) (*blockcache.StoredVolume, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	v, err := blockcache.CreateStored(dir, blockcache.StoredConfig{Name: filepath.Base(dir), Size: st.Size(), BlockSize: bs, Codec: codec}, blockcache.Options{})
	if err != nil {
		return nil, err
	}
	p := make([]byte, bs)
	zero := make([]byte, bs)
	for off := int64(0); off < st.Size(); off += int64(bs) {
		n, err := f.ReadAt(p, off)
		if err != nil && err != io.EOF {
			v.Close()
			return nil, err
		}
		if string(p[:n]) == string(zero[:n]) {
			continue
		}
		if err := v.WriteAt(ctx, p[:n], off, false); err != nil {
			v.Close()
			return nil, err
		}
	}
	return v, v.Flush(ctx)
}

func runMutate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mutate", flag.ExitOnError)
	img := fs.String("img", "", "image file")
	vol := fs.String("vol", "", "volume directory (optional)")
	pct := fs.Float64("pct", 1, "percentage of 1 MiB blocks to rewrite")
	seed := fs.Uint64("seed", 2, "seed")
	fs.Parse(args)
	f, err := os.OpenFile(*img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var v *blockcache.StoredVolume
	if *vol != "" {
		if v, err = blockcache.OpenStored(*vol, blockcache.Options{}); err != nil {
			return err
		}
		defer v.Close()
	}
	blocks := st.Size() / genBlock
	n := int(float64(blocks) * *pct / 100)
	r := rand.New(rand.NewPCG(*seed, 0x52))
	p := make([]byte, genBlock)
	for _, b := range r.Perm(int(blocks))[:n] {
		// Rewrite 64 KiB inside the block: a typical small update.
		q := p[:64<<10]
		fillBlock(r, q, r.IntN(2))
		off := int64(b)*genBlock + int64(r.IntN(16))*(64<<10)
		if _, err := f.WriteAt(q, off); err != nil {
			return err
		}
		if v != nil {
			if err := v.WriteAt(ctx, q, off, false); err != nil {
				return err
			}
		}
	}
	if v != nil {
		if err := v.Flush(ctx); err != nil {
			return err
		}
	}
	fmt.Printf("{\"changed_blocks\":%d}\n", n)
	return f.Sync()
}

type s3Flags struct {
	endpoint, bucket, prefix, cpuprofile *string
	workers, packSize                    *int
}

func addS3(fs *flag.FlagSet) s3Flags {
	return s3Flags{
		endpoint:   fs.String("endpoint", "http://127.0.0.1:9000", "S3 endpoint"),
		bucket:     fs.String("bucket", "sluice", "bucket"),
		prefix:     fs.String("prefix", "", "key prefix"),
		workers:    fs.Int("workers", 16, "upload/download workers"),
		packSize:   fs.Int("pack-size", 0, "pack size in bytes for large runs (0: the default, -1: one object per chunk)"),
		cpuprofile: fs.String("cpuprofile", "", "write a CPU profile here"),
	}
}

// profile starts a CPU profile when asked and returns its stop function.
func (f s3Flags) profile() func() {
	if *f.cpuprofile == "" {
		return func() {}
	}
	pf, err := os.Create(*f.cpuprofile)
	if err != nil {
		return func() {}
	}
	pprof.StartCPUProfile(pf)
	return func() { pprof.StopCPUProfile(); pf.Close() }
}

func (f s3Flags) open() (objstore.Store, *objstore.Metrics, *snapshot.Catalog, error) {
	base, err := objstore.NewS3(objstore.S3Config{Endpoint: *f.endpoint, Bucket: *f.bucket})
	if err != nil {
		return nil, nil, nil, err
	}
	m := objstore.NewMetrics()
	s := objstore.Wrap(base, objstore.Options{Metrics: m})
	var log *slog.Logger
	if os.Getenv("SNAPGEN_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cat, err := snapshot.Open(s, snapshot.Options{Prefix: *f.prefix, Concurrency: *f.workers, PackSize: *f.packSize, Logger: log})
	return s, m, cat, err
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func runSnapshot(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("snapshot", flag.ExitOnError)
	vol := fs.String("vol", "", "volume directory")
	s3 := addS3(fs)
	fs.Parse(args)
	_, m, cat, err := s3.open()
	if err != nil {
		return err
	}
	v, err := blockcache.OpenStored(*vol, blockcache.Options{})
	if err != nil {
		return err
	}
	defer v.Close()
	defer s3.profile()()
	start := time.Now()
	in, err := v.Snapshot(ctx, cat, blockcache.SnapshotRequest{})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	st := m.Snapshot()
	emit(map[string]any{
		"id": in.ID, "seconds": secs, "bytes_up": st.BytesUp, "puts": st.Requests[objstore.OpPut],
		"stored_bytes": in.StoredBytes, "chunks_uploaded": in.ChunksUploaded, "blocks_read": in.BlocksRead,
		"logical_bytes": in.LogicalBytes, "mb_per_s": float64(v.Size()) / secs / 1e6,
	})
	return nil
}

func runRestore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("restore", flag.ExitOnError)
	out := fs.String("out", "", "file to create")
	id := fs.String("id", "", "snapshot id (default: the newest)")
	nosync := fs.Bool("nosync", false, "do not fsync the restored file (as restic restore)")
	s3 := addS3(fs)
	fs.Parse(args)
	_, m, cat, err := s3.open()
	if err != nil {
		return err
	}
	if *id == "" {
		list, err := cat.List(ctx, snapshot.ListFilter{Status: snapshot.StatusCompleted})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return errors.New("no snapshot")
		}
		*id = list[len(list)-1].ID
	}
	defer s3.profile()()
	start := time.Now()
	var res snapshot.RestoreResult
	if *nosync {
		res, err = restoreNoSync(ctx, cat, *id, *out)
	} else {
		res, err = cat.RestoreToFile(ctx, *id, *out)
	}
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	emit(map[string]any{"id": *id, "seconds": secs, "bytes_down": m.Snapshot().BytesDown,
		"bytes": res.Bytes, "mb_per_s": float64(res.Info.Size) / secs / 1e6})
	return nil
}

// restoreNoSync restores into a new file the way RestoreToFile does
// (RestoreInto), without the final fsync.
func restoreNoSync(ctx context.Context, cat *snapshot.Catalog, id, path string) (snapshot.RestoreResult, error) {
	in, err := cat.Get(ctx, id)
	if err != nil {
		return snapshot.RestoreResult{}, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return snapshot.RestoreResult{}, err
	}
	defer f.Close()
	if err := f.Truncate(in.Size); err != nil {
		return snapshot.RestoreResult{}, err
	}
	return cat.RestoreInto(ctx, id, f)
}

func runDU(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("du", flag.ExitOnError)
	s3 := addS3(fs)
	fs.Parse(args)
	s, _, _, err := s3.open()
	if err != nil {
		return err
	}
	var n, total int64
	err = objstore.ListAll(ctx, s, *s3.prefix, func(o objstore.ObjectInfo) error {
		n++
		total += o.Size
		return nil
	})
	if err != nil {
		return err
	}
	emit(map[string]any{"objects": n, "bytes": total})
	return nil
}

func runMkbucket(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mkbucket", flag.ExitOnError)
	s3 := addS3(fs)
	fs.Parse(args)
	s, err := objstore.NewS3(objstore.S3Config{Endpoint: *s3.endpoint, Bucket: *s3.bucket})
	if err != nil {
		return err
	}
	return s.EnsureBucket(ctx)
}

// runBlockSize snapshots the same image with each block size, then
// applies 2,000 random 4 KiB writes and snapshots again, printing time,
// stored bytes and incremental upload per block size.
func runBlockSize(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("blocksize", flag.ExitOnError)
	img := fs.String("img", "", "image file")
	dir := fs.String("dir", "", "scratch directory")
	codecS := codecFlag(fs)
	s3 := addS3(fs)
	fs.Parse(args)
	codec, err := snapshot.ParseCodec(*codecS)
	if err != nil {
		return err
	}
	for _, bs := range []int{64 << 10, 256 << 10, 1 << 20, 2 << 20, 4 << 20} {
		prefix := fmt.Sprintf("bs%d/", bs>>10)
		*s3.prefix = prefix
		_, m, cat, err := s3.open()
		if err != nil {
			return err
		}
		vdir := filepath.Join(*dir, prefix)
		v, err := importImage(ctx, *img, vdir, codec, bs)
		if err != nil {
			return err
		}
		start := time.Now()
		s1, err := v.Snapshot(ctx, cat, blockcache.SnapshotRequest{})
		if err != nil {
			return err
		}
		full := time.Since(start).Seconds()
		puts := m.Snapshot().Requests[objstore.OpPut]
		r := rand.New(rand.NewPCG(5, 5))
		p := make([]byte, 4096)
		for i := 0; i < 2000; i++ {
			fillBlock(r, p, 0)
			if err := v.WriteAt(ctx, p, r.Int64N(v.Size()/4096)*4096, false); err != nil {
				return err
			}
		}
		before := m.Snapshot().BytesUp
		start = time.Now()
		s2, err := v.Snapshot(ctx, cat, blockcache.SnapshotRequest{})
		if err != nil {
			return err
		}
		incr := time.Since(start).Seconds()
		mb, _ := cat.Manifest(ctx, s2.ID)
		emit(map[string]any{
			"block_kib": bs >> 10, "full_seconds": full, "full_mb_per_s": float64(v.Size()) / full / 1e6,
			"full_puts": puts, "stored_bytes": s1.StoredBytes, "incr_seconds": incr,
			"incr_bytes_up": m.Snapshot().BytesUp - before, "incr_blocks": s2.BlocksRead,
			"manifest_bytes": len(mb.Encode()),
		})
		v.Close()
		cat.Close()
		os.RemoveAll(vdir)
	}
	return nil
}
