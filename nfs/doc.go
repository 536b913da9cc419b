// Package nfs is Sluice's file gateway: an NFSv3 server (RFC 1813) whose
// shares are S3 buckets, so every file a client writes becomes an ordinary
// object (key = path, same bytes) and every object put into the bucket by
// others shows up as a file.
//
// # Serving
//
// The daemon builds one Server and adds shares to it:
//
//	srv, err := nfs.NewServer(nfs.Config{Logger: l, StateDir: st, CacheDir: cd,
//		CacheSize: 20 << 30, MetadataTTL: 5 * time.Second, SettleTime: 3 * time.Second,
//		PortmapAddr: ":111", OnUpload: bus.publish})
//	err = srv.AddShare(nfs.Share{Name: "media", Store: store, Prefix: "",
//		AllowedClients: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
//		Squash: nfs.RootSquash})
//	go srv.Serve(ln) // ln: a TCP listener, e.g. on :2049
//	...
//	srv.Refresh(ctx, "media", "some/dir", true) // like AWS RefreshCache
//	srv.Sessions()                               // current mounts, for metrics
//	srv.Shutdown(ctx)                            // uploads what it can first
//
// The export path of a share is "/" + Name. One listener serves NFS
// (program 100003 v3) and MOUNT (100005 v3: NULL, MNT, DUMP, UMNT, UMNTALL,
// EXPORT) on the same port; with Config.PortmapAddr set, a portmapper
// (100000 v2: NULL, GETPORT, DUMP) answers on TCP and UDP there and reports
// that port for both programs, so clients can use plain "nfs://host/share"
// URLs. AUTH_UNIX and AUTH_NULL credentials are accepted (MNT advertises
// both); AUTH_NULL callers are the anonymous user.
//
// The RPC layer is Sluice's own (package nfs/internal/rpc, fuzzed), not
// github.com/willscott/go-nfs: go-nfs answers COMMIT without telling the
// filesystem, always replies FILE_SYNC to WRITE, passes no caller identity
// to the filesystem (so squash cannot set the owner of new files) and keeps
// its handlers in a package-global registry.
//
// # Access control
//
// Each share lists the client networks allowed (MNT answers MNT3ERR_ACCES,
// every NFS call NFS3ERR_ACCES to others), a squash mode (root squash by
// default, all squash, none) with the anonymous uid/gid (default 65534),
// and a read-only flag (changes fail with NFS3ERR_ROFS). Permission bits
// are checked against the (squashed) caller like a POSIX file system.
//
// # Object mapping
//
// A share is a bucket plus an optional key prefix. A file is an object
// whose key is Prefix + path; a directory is a key prefix ending in "/",
// with an empty marker object "dir/" for directories created through NFS
// (directories that exist only because objects lie below them work too).
// POSIX attributes are object user metadata (x-amz-meta-…): MetaMode,
// MetaUID, MetaGID, MetaAtime, MetaMtime, MetaCtime. Objects without them
// read as mode 0666 (directories 0777), owner 0:0, times = Last-Modified. A
// symbolic link is a small object whose body is the target, flagged with
// MetaType = "symlink". Hard links and device files are refused with
// NFS3ERR_NOTSUPP. When a key is both an object and a prefix, the object
// wins. Keys that are not valid paths ("a//b", names "." or "..") are not
// shown.
//
// File handles are 16 bytes (share id, file id); the file id <-> path index
// is an append-only log in StateDir, so handles survive restarts and keep
// working across renames done through the server.
//
// Renaming a file is a server-side copy plus delete. Renaming a directory
// copies and deletes every object below it: O(objects), and not atomic for
// other S3 clients watching the bucket.
//
// # Caching and uploads
//
// File data is cached in CacheDir in 1 MiB blocks of a sparse file per
// file (new files of up to 256 KiB are kept in memory until uploaded).
// Reads of uncached ranges are ranged GETs; a sequential reader gets
// ReadAhead bytes fetched ahead in the background, in parallel chunks.
// Writes land in the cache (write-back) and the file is uploaded once the
// client COMMITs it (or writes with FILE_SYNC), or after it has been idle
// for SettleTime: one PUT up to PartSize, a parallel multipart upload
// beyond; when only part of a large object changed, the unchanged parts are
// copied server-side (UploadPartCopy) from the previous version.
//
// Uploads give way to clients: while clients keep the server busy (at
// least 32 NFS calls in the last 250 ms), a file ready for upload waits,
// at most UploadHold (10 s) after its last write and while the cache is
// less than half full, and is uploaded as soon as the clients pause. Its
// data is durable in the cache already, so a burst of writes runs at local
// speed instead of sharing the CPUs with its own uploads (and with the
// object store, when that runs on the same machine); the uploads follow
// right after it. Under sustained load the uploads run UploadHold behind
// the writes. Shutdown never waits.
//
// Durability: each share has a journal (wal.go) in CacheDir. COMMIT and
// stable WRITEs append the file's state (attributes, which blocks are
// present and dirty, and the data itself for files up to 256 KiB) and
// wait for a group sync that one committer performs for all waiting ones,
// so many small files cost one sync; larger files have their data file
// synced first. Unstable WRITEs are durable only once committed (the write
// verifier changes at every start, so clients resend what a crash lost).
// When a share is added, files with changes not yet uploaded are restored
// from the journal and uploaded. Clean data is evicted least recently used
// beyond CacheSize; dirty data never is. After each upload Config.OnUpload
// receives an UploadEvent.
//
// Metadata (attributes, lookups, directory listings) is cached for
// MetadataTTL and then revalidated with HEAD or LIST, so objects created,
// changed or deleted directly in the bucket are seen within the TTL with
// no manual step; cached data of an object whose ETag changed is dropped.
// Refresh forces this at once. Attributes in READDIRPLUS replies for
// objects not looked up yet come from the listing (defaults plus size and
// Last-Modified, since listings carry no user metadata): until a client
// looks such an object up, a symbolic link created before a restart or by
// another gateway is listed as a regular file, and metadata set by other
// tools shows the defaults.
//
// Limits: one server process per state directory; concurrent writers
// through two gateways, or a gateway and another S3 client, to the same
// object are last-writer-wins per upload; NFSv3 over TCP only (no UDP, no
// NLM locking, no NFSv4).
//
// # Errors
//
// Procedure handlers return errors; a StatusError carries its NFSv3 status
// and the dispatcher (nfsCall) is the one place that writes statuses to the
// wire. Object-store errors map to NFS3ERR_NOENT (not found),
// NFS3ERR_JUKEBOX (retryable: the client retries later) or NFS3ERR_IO.
package nfs
