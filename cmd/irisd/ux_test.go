package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	needBinary(t)
	out, err := exec.Command(irisdBin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "irisd ") || !strings.HasSuffix(string(out), ")\n") {
		t.Fatalf("irisd version: %v %q", err, out)
	}
}

// TestDevExitsWithParent: a dev node whose parent dies (go run killed by
// SIGTERM, a shell closed) shuts down instead of holding its ports.
func TestDevExitsWithParent(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "irisd.log")
	listen := "127.0.0.1:" + freePort(t)
	// The shell stands in for `go run`: it starts irisd as its child,
	// prints its pid and waits.
	sh := exec.Command("sh", "-c", `"$0" -dev -listen "$1" -relay 0 -status 127.0.0.1:0 2>"$2" & echo $!; wait`,
		irisdBin, listen, logFile)
	sh.Env = cleanEnv()
	stdout, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pidLine, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var pid int
		if _, err := fmt.Sscan(pidLine, &pid); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL) // irisd, if the test failed
		}
	})
	logs := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	waitFor(t, 15*time.Second, "the dev node to listen", func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := sh.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sh.Wait()
	waitFor(t, 15*time.Second, "the dev node to shut down after its parent died", func() bool {
		return strings.Contains(logs(), `"daemon stopped"`)
	})
	if !strings.Contains(logs(), "shutting down gracefully") {
		t.Errorf("the dev node did not shut down gracefully:\n%s", logs())
	}
}
