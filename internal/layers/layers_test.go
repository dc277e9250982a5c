// Package layers checks that imports point down only, as
// docs/architecture.md draws them:
//
//	cmd/irisd → daemon → relay → cluster → overlay → crypto
//	                     relay → api;   sdk → api;   examples → sdk
//
// It runs `go list -deps` on each package and fails on an edge the
// architecture forbids, naming the reason.
package layers

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/iris-mesh/iris/"

// rules: for each package, the project packages it must not depend on
// (directly or not), and why.
var rules = []struct {
	pkg    string
	banned []string
	why    string
}{
	{"api", []string{"crypto", "overlay", "cluster", "relay", "daemon", "sdk"}, "api is a leaf: the wire types a client in any language implements"},
	{"crypto", []string{"api", "overlay", "cluster", "relay", "daemon", "sdk"}, "crypto is a pure leaf"},
	{"overlay", []string{"api", "cluster", "relay", "daemon", "sdk"}, "the overlay moves opaque frames and knows nothing of clusters or apps"},
	{"cluster", []string{"api", "relay", "daemon", "sdk"}, "the cluster layer knows nothing of the app protocol"},
	{"relay", []string{"daemon", "sdk"}, "the relay is wired by the daemon, and the SDK is the other side of the wire"},
	{"sdk", []string{"crypto", "overlay", "cluster", "relay", "daemon"}, "the SDK speaks the relay protocol only: it imports api and nothing below"},
	{"daemon", []string{"sdk"}, "the daemon serves apps; it is not one"},
	{"cmd/irisd", []string{"sdk"}, "irisd serves apps; it is not one"},
	{"examples/echo", []string{"crypto", "overlay", "cluster", "relay", "daemon", "internal/leakcheck"}, "examples use the SDK only"},
	{"cmd/iris", []string{"crypto", "overlay", "cluster", "relay", "daemon"}, "the CLI is an app: it talks to irisd through the SDK"},
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

func TestImportsPointDown(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			for _, d := range deps(t, r.pkg) {
				for _, b := range r.banned {
					if d == mod+b || strings.HasPrefix(d, mod+b+"/") {
						t.Errorf("%s depends on %s: %s", r.pkg, b, r.why)
					}
				}
			}
		})
	}
}

// TestLibrariesDoNotTouchGlobalLogger: only cmd/irisd may use zerolog's
// global logger.
func TestLibrariesDoNotTouchGlobalLogger(t *testing.T) {
	for _, pkg := range []string{"api", "crypto", "overlay", "cluster", "relay", "daemon", "sdk"} {
		for _, d := range deps(t, pkg) {
			if d == "github.com/rs/zerolog/log" {
				t.Errorf("%s imports github.com/rs/zerolog/log: inject a zerolog.Logger in its Config", pkg)
			}
		}
	}
}
