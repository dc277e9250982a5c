// Package deploy holds the files to run irisd in production: a systemd
// unit (irisd.service) and a container image (Dockerfile). Its tests check
// them with the tools at hand: systemd-analyze when installed, and a
// static build as the Dockerfile does it.
package deploy

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnit verifies irisd.service with systemd-analyze: it must
// parse without a warning, and its sandboxing must keep systemd's exposure
// score low.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: apt-get install systemd); irisd.service not verified")
	}
	unit, err := os.ReadFile("irisd.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: stand in for irisd
	// with this test's executable.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/irisd ")) {
		t.Fatal("irisd.service does not run /usr/local/bin/irisd")
	}
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/irisd"), []byte(self))
	path := filepath.Join(t.TempDir(), "irisd.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify irisd.service: %v\n%s", err, out)
	}

	out, err = exec.Command(analyze, "security", "--offline=yes", path).CombinedOutput()
	if err != nil {
		t.Logf("systemd-analyze security --offline not supported here (%v); exposure not checked", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for irisd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f (0 best, 10 worst)", level)
	if level > 2.5 {
		t.Errorf("irisd.service exposure %.1f, want at most 2.5: the sandboxing has weakened\n%s", level, out)
	}
}

// TestDockerfile checks what can be checked without docker: the image is
// multi-stage, builds with CGO_ENABLED=0 and runs as a non-root user; and
// that build gives a static irisd (no ELF interpreter, no dynamic section).
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(df)
	if n := strings.Count(s, "\nFROM "); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a build stage and a runtime stage", n)
	}
	for _, want := range []string{"ENV CGO_ENABLED=0", "./cmd/irisd", "./cmd/iris", `ENTRYPOINT ["/usr/local/bin/irisd"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(s, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "root") || strings.HasPrefix(users[len(users)-1][1], "0") {
		t.Errorf("the image does not run as a non-root user: USER %v", users)
	}
	if ig, err := os.ReadFile("Dockerfile.dockerignore"); err != nil || !strings.Contains(string(ig), "*.key") {
		t.Errorf("Dockerfile.dockerignore must keep key files out of the build context (%v)", err)
	}

	if testing.Short() {
		t.Skip("static build: skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "irisd")
	// As the Dockerfile builds, less -trimpath and -ldflags, which change
	// nothing about linking but would rebuild every package (about 50 s of
	// CPU on a CI machine instead of about 15).
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/irisd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("not an ELF binary on this system: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("CGO_ENABLED=0 irisd is not static: it has a %v program header", p.Type)
		}
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "irisd ") {
		t.Fatalf("static irisd version: %v %q", err, out)
	}
}
