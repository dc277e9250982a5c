package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	i := Read()
	if i.Version == "" || i.GoVersion != runtime.Version() {
		t.Fatalf("Read() = %+v", i)
	}
	if !strings.HasPrefix(i.String(), i.Version+" (") {
		t.Fatalf("String() = %q", i.String())
	}
}

func TestShortRevision(t *testing.T) {
	i := Info{Version: "v1.0.0", Revision: "0123456789abcdef", Modified: true, GoVersion: "go1.26.0"}
	if got, want := i.String(), "v1.0.0 (revision 0123456789ab-dirty, go1.26.0)"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if got := (Info{Version: "(devel)", GoVersion: "go1.26.0"}).String(); got != "(devel) (go1.26.0)" {
		t.Fatalf("String() = %q", got)
	}
}
