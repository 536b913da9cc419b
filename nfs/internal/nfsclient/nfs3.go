package nfsclient

import (
	"time"

	"github.com/sluicegw/sluice/nfs/internal/rpc"
)

// Attr is the part of fattr3 tests look at.
type Attr struct {
	Type, Mode, Nlink, UID, GID uint32
	Size                        uint64
	FileID                      uint64
	Mtime                       time.Time
}

func decodeFattr(d *rpc.Decoder) Attr {
	var a Attr
	a.Type, a.Mode, a.Nlink, a.UID, a.GID = d.Uint32(), d.Uint32(), d.Uint32(), d.Uint32(), d.Uint32()
	a.Size = d.Uint64()
	d.Uint64() // used
	d.Uint64() // rdev
	d.Uint64() // fsid
	a.FileID = d.Uint64()
	d.Uint64() // atime
	sec, nsec := d.Uint32(), d.Uint32()
	a.Mtime = time.Unix(int64(sec), int64(nsec))
	d.Uint64() // ctime
	return a
}

func postOp(d *rpc.Decoder) (Attr, bool) {
	if d.Bool() {
		return decodeFattr(d), true
	}
	return Attr{}, false
}

func skipWcc(d *rpc.Decoder) {
	if d.Bool() {
		d.Fixed(24)
	}
	postOp(d)
}

// status reads the leading status of a result.
func status(proc uint32, body []byte) (*rpc.Decoder, error) {
	d := rpc.NewDecoder(body)
	if st := d.Uint32(); st != 0 {
		return d, &StatusError{Proc: proc, Status: st}
	}
	return d, d.Err()
}

func (cl *Client) nfs(proc uint32, e *rpc.Encoder) (*rpc.Decoder, error) {
	body, err := cl.Call(ProgNFS, 3, proc, e.B)
	if err != nil {
		return nil, err
	}
	return status(proc, body)
}

// Mount asks MOUNT v3 for the root handle of an export.
func (cl *Client) Mount(path string) ([]byte, error) {
	var e rpc.Encoder
	e.String(path)
	body, err := cl.Call(ProgMount, 3, 1, e.B)
	if err != nil {
		return nil, err
	}
	d, err := status(1, body)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), d.Opaque(64)...), d.Err()
}

// Getattr returns a file's attributes.
func (cl *Client) Getattr(fh []byte) (Attr, error) {
	var e rpc.Encoder
	e.Opaque(fh)
	d, err := cl.nfs(1, &e)
	if err != nil {
		return Attr{}, err
	}
	return decodeFattr(d), d.Err()
}

// Setattr sets the mode (when mode >= 0) and size (when size >= 0).
func (cl *Client) Setattr(fh []byte, mode int64, size int64) error {
	var e rpc.Encoder
	e.Opaque(fh)
	e.Bool(mode >= 0)
	if mode >= 0 {
		e.Uint32(uint32(mode))
	}
	e.Bool(false)
	e.Bool(false)
	e.Bool(size >= 0)
	if size >= 0 {
		e.Uint64(uint64(size))
	}
	e.Uint32(0)
	e.Uint32(0)
	e.Bool(false)
	_, err := cl.nfs(2, &e)
	return err
}

// Lookup resolves name in dir.
func (cl *Client) Lookup(dir []byte, name string) ([]byte, Attr, error) {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	d, err := cl.nfs(3, &e)
	if err != nil {
		return nil, Attr{}, err
	}
	fh := append([]byte(nil), d.Opaque(64)...)
	a, _ := postOp(d)
	return fh, a, d.Err()
}

func putSattr(e *rpc.Encoder, mode uint32) {
	e.Bool(true)
	e.Uint32(mode)
	e.Bool(false)
	e.Bool(false)
	e.Bool(false)
	e.Uint32(0)
	e.Uint32(0)
}

func created(d *rpc.Decoder, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	var fh []byte
	if d.Bool() {
		fh = append([]byte(nil), d.Opaque(64)...)
	}
	return fh, d.Err()
}

// Create creates (unchecked) a regular file.
func (cl *Client) Create(dir []byte, name string, mode uint32) ([]byte, error) {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	e.Uint32(0)
	putSattr(&e, mode)
	return created(cl.nfs(8, &e))
}

// Mkdir creates a directory.
func (cl *Client) Mkdir(dir []byte, name string, mode uint32) ([]byte, error) {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	putSattr(&e, mode)
	return created(cl.nfs(9, &e))
}

// Symlink creates a symbolic link.
func (cl *Client) Symlink(dir []byte, name, target string) ([]byte, error) {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	putSattr(&e, 0o777)
	e.String(target)
	return created(cl.nfs(10, &e))
}

// Readlink reads a link.
func (cl *Client) Readlink(fh []byte) (string, error) {
	var e rpc.Encoder
	e.Opaque(fh)
	d, err := cl.nfs(5, &e)
	if err != nil {
		return "", err
	}
	postOp(d)
	return d.String(4096), d.Err()
}

// Link makes a hard link (Sluice refuses it).
func (cl *Client) Link(file, dir []byte, name string) error {
	var e rpc.Encoder
	e.Opaque(file)
	e.Opaque(dir)
	e.String(name)
	_, err := cl.nfs(15, &e)
	return err
}

// Write writes data at off with the given stable_how (0 unstable, 2
// file sync).
func (cl *Client) Write(fh []byte, off uint64, data []byte, stable uint32) error {
	var e rpc.Encoder
	e.Opaque(fh)
	e.Uint64(off)
	e.Uint32(uint32(len(data)))
	e.Uint32(stable)
	e.Opaque(data)
	_, err := cl.nfs(7, &e)
	return err
}

// Read reads up to n bytes at off.
func (cl *Client) Read(fh []byte, off uint64, n uint32) ([]byte, bool, error) {
	var e rpc.Encoder
	e.Opaque(fh)
	e.Uint64(off)
	e.Uint32(n)
	d, err := cl.nfs(6, &e)
	if err != nil {
		return nil, false, err
	}
	postOp(d)
	d.Uint32()
	eof := d.Bool()
	return append([]byte(nil), d.Opaque(1<<22)...), eof, d.Err()
}

// Commit commits a file's writes.
func (cl *Client) Commit(fh []byte) error {
	var e rpc.Encoder
	e.Opaque(fh)
	e.Uint64(0)
	e.Uint32(0)
	_, err := cl.nfs(21, &e)
	return err
}

// Remove removes a file.
func (cl *Client) Remove(dir []byte, name string) error {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	_, err := cl.nfs(12, &e)
	return err
}

// Rmdir removes a directory.
func (cl *Client) Rmdir(dir []byte, name string) error {
	var e rpc.Encoder
	e.Opaque(dir)
	e.String(name)
	_, err := cl.nfs(13, &e)
	return err
}

// Rename renames from/fromName to to/toName.
func (cl *Client) Rename(from []byte, fromName string, to []byte, toName string) error {
	var e rpc.Encoder
	e.Opaque(from)
	e.String(fromName)
	e.Opaque(to)
	e.String(toName)
	_, err := cl.nfs(14, &e)
	return err
}

// Entry is a READDIRPLUS entry.
type Entry struct {
	Name string
	Attr Attr
	FH   []byte
}

// ReadDirPlus lists a whole directory (without "." and "..").
func (cl *Client) ReadDirPlus(dir []byte) ([]Entry, error) {
	var out []Entry
	cookie := uint64(0)
	for {
		var e rpc.Encoder
		e.Opaque(dir)
		e.Uint64(cookie)
		e.Uint64(0)
		e.Uint32(8192)
		e.Uint32(65536)
		d, err := cl.nfs(17, &e)
		if err != nil {
			return nil, err
		}
		postOp(d)
		d.Uint64()
		for d.Bool() {
			d.Uint64()
			name := d.String(255)
			cookie = d.Uint64()
			a, _ := postOp(d)
			var fh []byte
			if d.Bool() {
				fh = append([]byte(nil), d.Opaque(64)...)
			}
			if name != "." && name != ".." {
				out = append(out, Entry{Name: name, Attr: a, FH: fh})
			}
		}
		eof := d.Bool()
		if err := d.Err(); err != nil {
			return nil, err
		}
		if eof {
			return out, nil
		}
	}
}

// Getport asks a portmapper for the port of (prog, vers, TCP).
func (cl *Client) Getport(prog, vers uint32) (uint32, error) {
	var e rpc.Encoder
	e.Uint32(prog)
	e.Uint32(vers)
	e.Uint32(6)
	e.Uint32(0)
	body, err := cl.Call(ProgPortmap, 2, 3, e.B)
	if err != nil {
		return 0, err
	}
	d := rpc.NewDecoder(body)
	return d.Uint32(), d.Err()
}

// Mapping is a portmapper DUMP entry.
type Mapping struct{ Prog, Vers, Prot, Port uint32 }

// Dump lists a portmapper's mappings.
func (cl *Client) Dump() ([]Mapping, error) {
	body, err := cl.Call(ProgPortmap, 2, 4, nil)
	if err != nil {
		return nil, err
	}
	d := rpc.NewDecoder(body)
	var out []Mapping
	for d.Bool() {
		out = append(out, Mapping{d.Uint32(), d.Uint32(), d.Uint32(), d.Uint32()})
	}
	return out, d.Err()
}
