// Package buildinfo reports which build of Iris is running: the module
// version and the VCS revision the Go toolchain stamped into the binary.
// irisd and iris print it for their version commands, and the daemon puts
// it in /status and on the iris_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info describes a build.
type Info struct {
	// Version is the main module's version: a release tag such as v1.2.0,
	// a pseudo-version for a `go install` of a commit, or "(devel)" for a
	// binary built inside a checkout.
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, "" when the
	// toolchain did not record one (go run, go test, -buildvcs=false).
	Revision string `json:"revision,omitempty"`
	// Time is the commit's time (RFC 3339), "" when unknown.
	Time string `json:"time,omitempty"`
	// Modified is set when the work tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go"`
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// ShortRevision returns the first 12 characters of the revision, with
// "-dirty" appended for a modified work tree; "" when unknown.
func (i Info) ShortRevision() string {
	r := i.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if r != "" && i.Modified {
		r += "-dirty"
	}
	return r
}

// String returns one line for a version command, such as
// "v1.2.0 (revision 0123456789ab, go1.26.0)".
func (i Info) String() string {
	if r := i.ShortRevision(); r != "" {
		return fmt.Sprintf("%s (revision %s, %s)", i.Version, r, i.GoVersion)
	}
	return fmt.Sprintf("%s (%s)", i.Version, i.GoVersion)
}
