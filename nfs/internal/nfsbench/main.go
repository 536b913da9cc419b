// Command nfsbench is the driver of bench/nfs.sh. "serve" runs a Sluice NFS
// server for one S3 bucket (the daemon is not needed); "smallfiles" creates
// many small files over NFSv3 with parallel workers against any server and
// prints the rate; "readfile" reads a file with 1 MiB READs, depth of them
// outstanding at once, and prints MiB/s.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/nfs"
	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nfsbench serve|smallfiles [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "smallfiles":
		err = smallFiles(os.Args[2:])
	case "readfile":
		err = readFile(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nfsbench:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint URL")
	bucket := fs.String("bucket", "", "bucket")
	dir := fs.String("dir", "", "state and cache directory")
	listen := fs.String("listen", "127.0.0.1:0", "NFS address")
	verbose := fs.Bool("v", false, "log to stderr")
	uploadWorkers := fs.Int("upload-workers", 0, "files uploaded at once (0: the server's default)")
	mutexProfile := fs.String("mutexprofile", "", "write mutex (and, with .block appended, blocking) profiles here at exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run here")
	fs.Parse(args)
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); pf.Close() }()
	}
	if *mutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		defer func() {
			for name, suffix := range map[string]string{"mutex": "", "block": ".block"} {
				if pf, err := os.Create(*mutexProfile + suffix); err == nil {
					pprof.Lookup(name).WriteTo(pf, 0)
					pf.Close()
				}
			}
		}()
	}
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: *endpoint, Bucket: *bucket,
		Credentials: credentials.NewStaticV4(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), "")})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := s3.EnsureBucket(ctx); err != nil {
		return err
	}
	var log *slog.Logger
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var outMu sync.Mutex
	onUpload := func(ev nfs.UploadEvent) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf("UPLOADED %s %d\n", ev.Path, ev.Size)
	}
	srv, err := nfs.NewServer(nfs.Config{Logger: log, StateDir: *dir + "/state", CacheDir: *dir + "/cache",
		CacheSize: 8 << 30, OnUpload: onUpload, UploadConcurrency: *uploadWorkers})
	if err != nil {
		return err
	}
	if err := srv.AddShare(nfs.Share{Name: "share", Store: objstore.Wrap(s3, objstore.Options{}), Squash: nfs.NoSquash,
		AllowedClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return srv.Shutdown(sctx)
}

func smallFiles(args []string) error {
	fs := flag.NewFlagSet("smallfiles", flag.ExitOnError)
	addr := fs.String("addr", "", "NFS server host:port (MOUNT on the same port unless -mountaddr)")
	mountAddr := fs.String("mountaddr", "", "MOUNT server host:port")
	export := fs.String("export", "/share", "export path")
	n := fs.Int("n", 10000, "files")
	size := fs.Int("size", 4096, "bytes per file")
	workers := fs.Int("workers", 16, "parallel workers (one connection each)")
	dirName := fs.String("dir", "small", "directory to create the files in")
	fs.Parse(args)
	if *mountAddr == "" {
		*mountAddr = *addr
	}
	mc, err := nfsclient.Dial(*mountAddr, nfsclient.Unix(0, 0))
	if err != nil {
		return err
	}
	root, err := mc.Mount(*export)
	mc.Close()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	conns := make([]*nfsclient.Client, *workers)
	for i := range conns {
		if conns[i], err = nfsclient.Dial(*addr, nfsclient.Unix(0, 0)); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	dir, err := conns[0].Mkdir(root, *dirName, 0o755)
	if err != nil {
		return fmt.Errorf("mkdir: %w", err)
	}
	data := []byte(strings.Repeat("x", *size))
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, *workers)
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := conns[w]
			for i := w; i < *n; i += *workers {
				name := fmt.Sprintf("f%06d", i)
				fh, err := cl.Create(dir, name, 0o644)
				if err == nil {
					err = cl.Write(fh, 0, data, 0)
				}
				if err == nil {
					err = cl.Commit(fh)
				}
				if err != nil {
					errc <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Printf("FILES %d %.3f %.1f\n", *n, el.Seconds(), float64(*n)/el.Seconds())
	return nil
}

func readFile(args []string) error {
	fs := flag.NewFlagSet("readfile", flag.ExitOnError)
	addr := fs.String("addr", "", "NFS server host:port (MOUNT on the same port unless -mountaddr)")
	mountAddr := fs.String("mountaddr", "", "MOUNT server host:port")
	export := fs.String("export", "/share", "export path")
	name := fs.String("name", "big.bin", "file in the export's root")
	depth := fs.Int("depth", 1, "READs outstanding at once")
	fs.Parse(args)
	if *mountAddr == "" {
		*mountAddr = *addr
	}
	mc, err := nfsclient.Dial(*mountAddr, nfsclient.Unix(0, 0))
	if err != nil {
		return err
	}
	root, err := mc.Mount(*export)
	mc.Close()
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	cl, err := nfsclient.Dial(*addr, nfsclient.Unix(0, 0))
	if err != nil {
		return err
	}
	defer cl.Close()
	fh, a, err := cl.Lookup(root, *name)
	if err != nil {
		return fmt.Errorf("lookup: %w", err)
	}
	start := time.Now()
	offs := make(chan uint64)
	errc := make(chan error, *depth)
	var wg sync.WaitGroup
	for range *depth {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offs {
				if _, _, err := cl.Read(fh, off, 1<<20); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for off := uint64(0); off < a.Size; off += 1 << 20 {
		offs <- off
	}
	close(offs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	el := time.Since(start)
	fmt.Printf("READ %d %.3f %.1f\n", a.Size, el.Seconds(), float64(a.Size)/(1<<20)/el.Seconds())
	return nil
}
