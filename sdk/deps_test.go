package sdk

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDependencies enforces the layering rule for the SDK: it imports only
// package api and the standard library (docs/style.md §2), and so do the
// example programs, apart from the SDK itself. Modelled on tailscale's
// tstest/deptest.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	const mod = "github.com/iris-mesh/iris/"
	tests := []struct {
		pkg     string
		allowed []string
	}{
		{"github.com/iris-mesh/iris/sdk", []string{mod + "api", mod + "sdk"}},
		{"github.com/iris-mesh/iris/examples/echo", []string{mod + "api", mod + "sdk", mod + "examples/echo"}},
		{"github.com/iris-mesh/iris/examples/tunnelcopy", []string{mod + "api", mod + "sdk", mod + "examples/tunnelcopy"}},
		{"github.com/iris-mesh/iris/examples/chat", []string{mod + "api", mod + "sdk", mod + "examples/chat"}},
		{"github.com/iris-mesh/iris/examples/broadcast", []string{mod + "api", mod + "sdk", mod + "examples/broadcast"}},
	}
	for _, tt := range tests {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", tt.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tt.pkg, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if !slices.Contains(tt.allowed, dep) {
				t.Errorf("%s depends on %s; it may import only %v and the standard library", tt.pkg, dep, tt.allowed)
			}
		}
	}
}
