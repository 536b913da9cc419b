package nfs

import (
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/nfs/internal/nfsclient"
)

// TestUploadsWaitForBusyClients checks foreground first: a committed file
// is not uploaded while clients keep the server busy, is uploaded as soon as
// they pause, and never waits longer than UploadHold or while the cache is
// over half full.
func TestUploadsWaitForBusyClients(t *testing.T) {
	tests := []struct {
		name     string
		hold     time.Duration
		busy     bool          // clients keep sending calls until the upload
		noUpload time.Duration // no upload may arrive this soon
		pause    time.Duration // the busy clients stop after this
		cache    int64         // Config.CacheSize (0: the default)
		size     int           // bytes written (0: 5)
	}{
		{name: "quiet server uploads at once", hold: time.Minute},
		{name: "held while busy, uploaded when clients pause", hold: time.Minute, busy: true,
			noUpload: 600 * time.Millisecond, pause: 800 * time.Millisecond},
		{name: "hold is bounded", hold: 300 * time.Millisecond, busy: true, pause: time.Hour},
		{name: "negative hold never waits", hold: -1, busy: true, pause: time.Hour},
		{name: "cache over half full ends the hold", hold: time.Minute, busy: true, pause: time.Hour,
			cache: 1 << 20, size: 600 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil, func(c *Config, _ *Share) {
				c.UploadHold = tc.hold
				if tc.cache > 0 {
					c.CacheSize = tc.cache
				}
			})
			cl := dial(t, ts.Port, nfsclient.Unix(0, 0))
			root := mount(t, cl)

			stop := make(chan struct{})
			var wg sync.WaitGroup
			defer func() { close(stop); wg.Wait() }()
			if tc.busy {
				for range 4 {
					busy := dial(t, ts.Port, nfsclient.Unix(0, 0))
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							if _, err := busy.Getattr(root); err != nil {
								return
							}
						}
					}()
				}
				deadline := time.Now().Add(10 * time.Second)
				for !ts.uploads.busy.Load() {
					if time.Now().After(deadline) {
						t.Fatal("4 clients sending GETATTRs in a loop never made the server busy")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}

			data := []byte("hello")
			if tc.size > 0 {
				data = randomBytes(tc.size)
			}
			createFile(t, cl, root, "f", 0o644, data)
			committed := time.Now()
			if tc.noUpload > 0 {
				select {
				case ev := <-ts.Events:
					t.Fatalf("%s uploaded %v after COMMIT while clients were busy", ev.Path, time.Since(committed))
				case <-time.After(tc.noUpload):
				}
			}
			if tc.pause < time.Hour {
				time.Sleep(time.Until(committed.Add(tc.pause)))
				close(stop)
				wg.Wait()
				stop = make(chan struct{})
			}
			select {
			case ev := <-ts.Events:
				if ev.Path != "f" {
					t.Fatalf("uploaded %q, want f", ev.Path)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("f not uploaded 20 s after COMMIT (busy %v)", ts.uploads.busy.Load())
			}
		})
	}
}
