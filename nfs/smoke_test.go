package nfs

import (
	"bytes"
	"os"
	"testing"
)

func TestSmokeLibnfs(t *testing.T) {
	ts := startServer(t, nil)
	data := bytes.Repeat([]byte("hello sluice "), 100000)
	src := writeTemp(t, data)
	t.Log(mustRun(t, "nfs-ls", ts.url("")))
	t.Log(mustRun(t, "nfs-cp", src, ts.url("a.txt")))
	t.Log(mustRun(t, "nfs-ls", ts.url("")))
	dst := t.TempDir() + "/dst"
	t.Log(mustRun(t, "nfs-cp", ts.url("a.txt"), dst))
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(data))
	}
	ev := <-ts.Events
	t.Logf("%+v", ev)
}
