// Package state is the appliance's own configuration database: volumes,
// shares, tapes, tokens and settings, kept under the data directory in a
// bbolt file (go.etcd.io/bbolt). bbolt was chosen because it is a
// well-kept, pure-Go, single-file embedded store with fully serialisable
// ACID transactions, fsync on commit and a file lock that keeps a second
// daemon off the same data directory; the appliance's configuration is
// small and read-mostly, which is bbolt's sweet spot.
//
// Records are JSON values in named collections (bbolt buckets), addressed
// by string keys.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors returned by DB.
var (
	// ErrNotFound: no record under that key.
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found a record under that key already.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process holds the database.
	ErrLocked = errors.New("state database is locked by another process")
)

// DB is the state database.
type DB struct {
	db *bolt.DB
}

// Open opens (creating) the database file. It fails with ErrLocked within
// a second when another process has it open.
func Open(path string) (*DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Tx is a transaction over the collections.
type Tx struct {
	tx *bolt.Tx
}

// Update runs fn in a read-write transaction, committed (and fsynced) when
// fn returns nil.
func (d *DB) Update(fn func(tx *Tx) error) error {
	return d.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(tx *Tx) error) error {
	return d.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx}) })
}

// Get decodes the record key of collection into v.
func (t *Tx) Get(collection, key string, v any) error {
	b := t.tx.Bucket([]byte(collection))
	if b == nil {
		return fmt.Errorf("%s %q: %w", collection, key, ErrNotFound)
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return fmt.Errorf("%s %q: %w", collection, key, ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s %q: decoding: %w", collection, key, err)
	}
	return nil
}

// Put stores v as the record key of collection, replacing any.
func (t *Tx) Put(collection, key string, v any) error {
	b, err := t.tx.CreateBucketIfNotExists([]byte(collection))
	if err != nil {
		return fmt.Errorf("%s: %w", collection, err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %q: encoding: %w", collection, key, err)
	}
	return b.Put([]byte(key), raw)
}

// Create stores v as a new record; it fails with ErrExists when the key is
// taken.
func (t *Tx) Create(collection, key string, v any) error {
	if b := t.tx.Bucket([]byte(collection)); b != nil && b.Get([]byte(key)) != nil {
		return fmt.Errorf("%s %q: %w", collection, key, ErrExists)
	}
	return t.Put(collection, key, v)
}

// Delete removes a record; it fails with ErrNotFound when there is none.
func (t *Tx) Delete(collection, key string) error {
	b := t.tx.Bucket([]byte(collection))
	if b == nil || b.Get([]byte(key)) == nil {
		return fmt.Errorf("%s %q: %w", collection, key, ErrNotFound)
	}
	return b.Delete([]byte(key))
}

// ForEach calls fn with every key and raw JSON value of collection in key
// order.
func (t *Tx) ForEach(collection string, fn func(key string, raw []byte) error) error {
	b := t.tx.Bucket([]byte(collection))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// Get reads one record in its own transaction.
func Get[T any](d *DB, collection, key string) (T, error) {
	var v T
	err := d.View(func(tx *Tx) error { return tx.Get(collection, key, &v) })
	return v, err
}

// List reads every record of a collection in key order.
func List[T any](d *DB, collection string) ([]T, error) {
	var out []T
	err := d.View(func(tx *Tx) error {
		return tx.ForEach(collection, func(key string, raw []byte) error {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("%s %q: decoding: %w", collection, key, err)
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}
