package vtl_test

import (
	"context"
	"log"
	"net"

	"github.com/sluicegw/sluice/internal/objstore"
	"github.com/sluicegw/sluice/iscsi"
	"github.com/sluicegw/sluice/vtl"
)

// Example shows how the daemon wires a tape gateway: open the library on
// the object store, serve its targets, manage tapes through the Library
// methods, close it at shutdown.
func Example() {
	ctx := context.Background()
	store, err := objstore.OpenEmbedded("/var/lib/sluice/objects")
	if err != nil {
		log.Fatal(err)
	}
	lib, err := vtl.Open(ctx, vtl.Config{Store: store, Prefix: "vtl/gw1/", Gateway: "gw1"})
	if err != nil {
		log.Fatal(err)
	}
	srv := iscsi.NewServer(iscsi.Config{})
	for _, t := range lib.Targets() { // changer, then tapedrive-01 ... -10
		if err := srv.AddTarget(t); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", ":3260")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)

	// sluicectl tape create --prefix AB --count 10 --size 2.5TiB --pool archive
	if _, err := lib.CreateTapes(ctx, vtl.CreateOptions{BarcodePrefix: "AB", Count: 10, Size: 2500 << 30, Pool: vtl.PoolArchive}); err != nil {
		log.Fatal(err)
	}
	// Keep 5 blank tapes available.
	if err := lib.SetAutoCreate(ctx, &vtl.AutoCreateRule{MinAvailable: 5, BarcodePrefix: "AB", Size: 2500 << 30, Pool: vtl.PoolArchive}); err != nil {
		log.Fatal(err)
	}

	_ = srv.Shutdown(ctx)
	_ = lib.Close(ctx)
}
