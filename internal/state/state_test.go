package state

import (
	"errors"
	"path/filepath"
	"testing"
)

type rec struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestCollections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := Get[rec](db, "things", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get from an empty collection: %v", err)
	}
	err = db.Update(func(tx *Tx) error {
		if err := tx.Create("things", "b", rec{"b", 2}); err != nil {
			return err
		}
		return tx.Create("things", "a", rec{"a", 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Create("things", "a", rec{}) }); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	all, err := List[rec](db, "things")
	if err != nil || len(all) != 2 || all[0].Name != "a" || all[1].N != 2 {
		t.Fatalf("list = %v, %v", all, err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Delete("things", "a") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Delete("things", "a") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Committed records survive reopening.
	db, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if r, err := Get[rec](db, "things", "b"); err != nil || r.N != 2 {
		t.Fatalf("after reopen: %v %v", r, err)
	}
}
