// Package archtest holds the test that keeps Sluice's package dependencies
// pointing downward: protocol front ends → storage → internal/objstore;
// only appliance wires packages together; control sees the rest through
// interfaces; cmd stays thin.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sluicegw/sluice"

// forbidden lists, per package prefix (relative to the module), the
// prefixes its non-test code must not import.
var forbidden = []struct {
	pkg    string
	banned []string
}{
	{"internal/", []string{"iscsi", "nfs", "vtl", "snapshot", "blockcache", "control", "appliance", "cmd"}},
	{"snapshot", []string{"iscsi", "nfs", "vtl", "control", "appliance", "cmd", "blockcache"}},
	{"blockcache", []string{"iscsi", "nfs", "vtl", "control", "appliance", "cmd"}},
	{"iscsi", []string{"nfs", "vtl", "control", "appliance", "cmd"}},
	{"nfs", []string{"iscsi", "vtl", "control", "appliance", "cmd"}},
	{"vtl", []string{"nfs", "control", "appliance", "cmd"}},
	{"control", []string{"iscsi", "nfs", "vtl", "snapshot", "blockcache", "appliance", "cmd", "internal/objstore"}},
	{"cmd/sluicectl", []string{"appliance", "iscsi", "nfs", "vtl", "snapshot", "blockcache", "internal/"}},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
}

func within(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestDependenciesPointDownward(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if irel == "appliance" && rel != "cmd/sluiced" {
				t.Errorf("%s imports appliance: only cmd/sluiced may", rel)
			}
			for _, rule := range forbidden {
				if !within(rel, rule.pkg) {
					continue
				}
				for _, b := range rule.banned {
					if within(irel, b) && !within(irel, rule.pkg) {
						t.Errorf("%s imports %s, which its layer must not", rel, irel)
					}
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list found only %d packages", n)
	}
}
