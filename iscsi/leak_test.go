package iscsi

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/iscsi/iscsitest"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestLoginLogoutNoLeaks runs 1,000 connect/login/command/logout cycles and
// checks that no goroutines or file descriptors are left behind.
func TestLoginLogoutNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	fds := openFDs(t)
	func() {
		ts := startServer(t, serverOpts{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for i := range 1000 {
			c, err := iscsitest.Dial(ctx, ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			o := iscsitest.Options{TargetName: testTarget, ISID: [6]byte{0x80, 0, 0, 0, byte(i >> 8), byte(i)}}
			if i%10 == 0 {
				o = iscsitest.Options{Discovery: true}
			}
			if err := c.Login(ctx, o); err != nil {
				t.Fatal(err)
			}
			if !o.Discovery {
				if _, err := c.Command(ctx, 0, []byte{0, 0, 0, 0, 0, 0}, nil, 0); err != nil {
					t.Fatal(err)
				}
			}
			if i%7 == 3 {
				c.Close() // vanish without logging out
				continue
			}
			if err := c.Logout(ctx); err != nil {
				t.Fatal(err)
			}
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		for len(ts.srv.Sessions()) > 0 && ctx2.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if n := len(ts.srv.Sessions()); n != 0 {
			t.Fatalf("%d sessions left", n)
		}
		ts.srv.Shutdown(ctx2)
	}()
	goleak.VerifyNone(t, ignore)
	deadline := time.Now().Add(5 * time.Second)
	for openFDs(t) > fds && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := openFDs(t); n > fds {
		t.Fatalf("%d file descriptors open, %d before", n, fds)
	}
}
