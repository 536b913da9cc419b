package blockcache

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync"

	"github.com/sluicegw/sluice/internal/fsutil"
	"github.com/sluicegw/sluice/snapshot"
)

// Bitmap file format: a 32-byte header then one bit per block.
//
//	0  4  magic "SLCB"
//	4  1  version (1)
//	5  3  reserved (zero)
//	8  4  block size, big endian
//	12 8  number of blocks, big endian
//	20 8  reserved (zero)
//	28 4  CRC-32C of bytes 0-27
//	32    (blocks+7)/8 bytes, bit i = byte i/8 bit i%8
//
// Only the header is checksummed: bits are updated in place, one byte at a
// time, and any bit pattern is a valid set (a stray set bit costs an extra
// upload, never a lost change, because bits are only ever set in place and
// cleared by rewriting the whole file atomically).
const (
	bitmapMagic     = "SLCB"
	bitmapVersion   = 1
	bitmapHeaderLen = 32
	// maxBitmapBlocks bounds the blocks a bitmap file may describe.
	maxBitmapBlocks = snapshot.MaxVolumeSize / snapshot.MinBlockSize
)

// headerCRC is the CRC-32C of a bitmap file header's first 28 bytes.
func headerCRC(b []byte) uint32 {
	return crc32.Checksum(b[:28], crc32.MakeTable(crc32.Castagnoli))
}

// encodeBitmapFile returns the file image of a bitmap.
func encodeBitmapFile(blockSize int, bm *snapshot.Bitmap) []byte {
	bits := bm.Bytes()
	b := make([]byte, bitmapHeaderLen, bitmapHeaderLen+len(bits))
	copy(b, bitmapMagic)
	b[4] = bitmapVersion
	binary.BigEndian.PutUint32(b[8:], uint32(blockSize))
	binary.BigEndian.PutUint64(b[12:], uint64(bm.Len()))
	binary.BigEndian.PutUint32(b[28:], headerCRC(b))
	return append(b, bits...)
}

// decodeBitmapFile parses and checks a bitmap file image.
func decodeBitmapFile(b []byte) (blockSize int, bm *snapshot.Bitmap, err error) {
	return decodeBitmapFileMax(b, maxBitmapBlocks)
}

func decodeBitmapFileMax(b []byte, maxBlocks int64) (int, *snapshot.Bitmap, error) {
	bad := func(what string) error { return fmt.Errorf("bitmap file: %s: %w", what, ErrCorrupt) }
	if len(b) < bitmapHeaderLen {
		return 0, nil, bad("too short")
	}
	if string(b[:4]) != bitmapMagic {
		return 0, nil, bad("bad magic")
	}
	if headerCRC(b) != binary.BigEndian.Uint32(b[28:]) {
		return 0, nil, bad("header checksum mismatch")
	}
	if b[4] != bitmapVersion {
		return 0, nil, bad(fmt.Sprintf("unknown version %d", b[4]))
	}
	bs := int(binary.BigEndian.Uint32(b[8:]))
	n := binary.BigEndian.Uint64(b[12:])
	if !snapshot.ValidBlockSize(bs) || n > uint64(maxBlocks) {
		return 0, nil, bad("bad geometry")
	}
	if uint64(len(b)-bitmapHeaderLen) != (n+7)/8 {
		return 0, nil, bad("length does not match the block count")
	}
	return bs, snapshot.BitmapFromBytes(int64(n), b[bitmapHeaderLen:]), nil
}

// bitmapFile is a persistent block bitmap: bits are set durably one at a
// time (Set) and the whole set is replaced atomically (Reset).
type bitmapFile struct {
	path      string
	blockSize int
	mu        sync.Mutex // guards f, bm, written, synced
	f         *os.File
	bm        *snapshot.Bitmap
	// written counts in-place byte updates; synced is the count known to
	// be durable. Concurrent Sets share one fdatasync (group commit).
	written, synced uint64
	syncMu          sync.Mutex // one fdatasync at a time
}

// writeFileAtomic writes data to path through a temporary file, fsyncs it
// and the directory.
func writeFileAtomic(path string, data []byte) error {
	return fsutil.WriteFileAtomic(path, data, 0o600)
}

func syncDir(dir string) error { return fsutil.SyncDir(dir) }

// createBitmapFile writes a new bitmap file holding bm and opens it.
func createBitmapFile(path string, blockSize int, bm *snapshot.Bitmap) (*bitmapFile, error) {
	if err := writeFileAtomic(path, encodeBitmapFile(blockSize, bm)); err != nil {
		return nil, fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return openBitmapFile(path)
}

// openBitmapFile opens and checks an existing bitmap file.
func openBitmapFile(path string) (*bitmapFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", filepath.Base(path), err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() > bitmapHeaderLen+maxBitmapBlocks/8+1 {
		f.Close()
		return nil, fmt.Errorf("%s is %d bytes: %w", filepath.Base(path), st.Size(), ErrCorrupt)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}
	bs, bm, err := decodeBitmapFile(b)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return &bitmapFile{path: path, blockSize: bs, f: f, bm: bm}, nil
}

// Test reports whether bit i is set.
func (b *bitmapFile) Test(i int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bm.Test(i)
}

// Set sets bit i and makes it durable before returning. It returns at
// once when the bit is already set and durable; callers that set bits at
// the same time share one fdatasync.
func (b *bitmapFile) Set(i int64) error {
	b.mu.Lock()
	if b.bm.Test(i) && b.written == b.synced {
		b.mu.Unlock()
		return nil
	}
	if !b.bm.Test(i) {
		b.bm.Set(i)
		// Rebuild the whole byte from memory: other bits of it may
		// have been set by earlier calls.
		var one [1]byte
		for k := int64(0); k < 8; k++ {
			if j := i&^7 + k; j < b.bm.Len() && b.bm.Test(j) {
				one[0] |= 1 << k
			}
		}
		if _, err := b.f.WriteAt(one[:], bitmapHeaderLen+i/8); err != nil {
			b.bm.Clear(i)
			b.mu.Unlock()
			return fmt.Errorf("updating %s: %w", filepath.Base(b.path), err)
		}
		b.written++
	}
	// The bit is set; wait until an fdatasync issued after its write
	// has completed.
	need := b.written
	b.mu.Unlock()
	b.syncMu.Lock()
	defer b.syncMu.Unlock()
	b.mu.Lock()
	if b.synced >= need {
		b.mu.Unlock()
		return nil
	}
	target, f := b.written, b.f
	b.mu.Unlock()
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Base(b.path), err)
	}
	b.mu.Lock()
	b.synced = max(b.synced, target)
	b.mu.Unlock()
	return nil
}

// Snapshot returns a copy of the bits.
func (b *bitmapFile) Snapshot() *snapshot.Bitmap {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bm.Clone()
}

// Reset replaces the bits atomically (rewrite and rename).
func (b *bitmapFile) Reset(bm *snapshot.Bitmap) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := writeFileAtomic(b.path, encodeBitmapFile(b.blockSize, bm)); err != nil {
		return fmt.Errorf("rewriting %s: %w", filepath.Base(b.path), err)
	}
	f, err := os.OpenFile(b.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", filepath.Base(b.path), err)
	}
	b.f.Close()
	b.f, b.bm = f, bm.Clone()
	b.synced = b.written // the new file is durable as a whole
	return nil
}

// Close closes the file.
func (b *bitmapFile) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.f.Close()
}
