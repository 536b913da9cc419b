// Package vtl is Sluice's virtual tape library: an SMC-3 media changer and
// SSC-3 tape drives served over iSCSI (each device its own target, as AWS
// Tape Gateway does), with virtual tapes stored in an object store.
//
// # Tapes in the object store
//
// A tape is a sequence of logical objects: records (blocks) and filemarks.
// Record data is packed into segments of up to Config.SegmentSize bytes,
// each compressed (LZ4 by default, or zstd) and stored as one object
// "<prefix>tapes/<barcode>/seg-<seq>" (16-byte header with codec, raw
// length and CRC-32C; segments that do not compress are stored as they
// are). The index lists the segments with, for each, the logical object
// number of its first object, the number of data bytes before it, and
// run-length encoded record sizes and filemarks. It is stored as chunk
// objects "idx-<id>" of 4,096 segments each and a small root object
// "index" naming them; a commit writes only the chunks from the first
// changed segment on (normally just the last) and then the root, so its
// cost does not grow with the tape, and a crash between the two leaves
// the previous root valid. Objects no longer referenced are deleted after
// the commit and, after a crash, when the tape is next loaded. From the
// index alone a drive answers READ POSITION, LOCATE and SPACE in O(log n)
// without downloading data; READ fetches segments on demand with
// Config.ReadAhead segments of read-ahead.
//
// # Memory
//
// A writing drive holds at most UploadConcurrency+1 raw segments and
// UploadConcurrency compressed ones (192 MiB with the defaults and data that
// does not compress, 320 MiB when it does); a reading
// drive ReadAhead+2 segments. Nothing is allocated per record.
//
// # Durability
//
// Drives run in buffered mode: WRITE returns GOOD once the record is in the
// drive's bounded memory buffer, and segments are compressed and uploaded
// in the background while the host keeps writing. The durability point is
// the index commit, which happens before GOOD status is returned for WRITE
// FILEMARKS (also with a count of zero and also with IMMED set), REWIND,
// LOAD UNLOAD, ERASE, LOCATE, SPACE, READ after writing, and before a
// MOVE MEDIUM takes the tape out of the drive: every segment is uploaded,
// then the index is written (chunks, then the root with a single Put).
// Data written after the last commit is lost if the gateway dies, as it is
// with a real drive's buffer. A failed upload or commit is reported as
// MEDIUM ERROR / WRITE ERROR and sticks until the tape is unloaded; the
// tape then holds what the last successful commit covered.
//
// # Library state
//
// The library's own state (slot map, tape metadata, pools, every barcode
// ever issued, the automatic creation rule and the audit trail) is one JSON
// object "<prefix>library.json", rewritten with an ETag precondition after
// every change. A library is therefore recoverable from its bucket alone:
// Open on the same store and prefix restores it.
package vtl
