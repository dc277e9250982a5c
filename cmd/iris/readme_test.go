package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeReady maps a README command run in the background to a shell
// command that succeeds once it is ready, so that the next line can use it.
// $A_STATUS is daemon a's status server; PORT is the line's last port.
var readmeReady = []struct {
	line  *regexp.Regexp
	ready string
}{
	{regexp.MustCompile(`-node c .*&$`), `[ "$(./iris -status $A_STATUS -json status | grep -o '"alive"' | wc -l)" -eq 2 ]`},
	{regexp.MustCompile(`^\./irisd .*&$`), `./iris -status $A_STATUS status`},
	{regexp.MustCompile(`iris serve upper .*&$`), `./iris -status $A_STATUS -json status | grep -q '"upper"'`},
	{regexp.MustCompile(`iris subscribe 'news\.>' .*&$`), `./iris -status $A_STATUS -json status | grep -q '"news\.'`},
	{regexp.MustCompile(`iris pull jobs .*&$`), `./iris -status $A_STATUS -json status | grep -q '"jobs"'`},
	{regexp.MustCompile(`iris expose web .*&$`), `./iris -status $A_STATUS -json status | grep -q '"web"'`},
	{regexp.MustCompile(`iris forward .*&$`), `echo >/dev/tcp/127.0.0.1/PORT`},
}

// TestREADME runs the README's quick start, "Three daemons on one machine"
// and "Every pattern from a shell", as a new user would (real irisd and iris
// processes, bash, curl), on free ports instead of the README's, and checks
// what each pattern prints.
func TestREADME(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	for _, tool := range []string{"bash", "curl", "grep", "wc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the README's commands need %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start, end := strings.Index(s, "## Three daemons on one machine"), strings.Index(s, "`iris help` lists")
	if start < 0 || end < start {
		t.Fatal("README: quick start sections not found")
	}
	var cmds []string
	for _, l := range strings.Split(s[start:end], "\n") {
		if strings.HasPrefix(l, "    ") {
			cmds = append(cmds, strings.TrimPrefix(l, "    "))
		}
	}
	if len(cmds) < 20 || !strings.HasPrefix(cmds[0], "go build -o irisd ./cmd/irisd && go build -o iris ./cmd/iris") {
		t.Fatalf("README quick start changed: %q", cmds)
	}

	dir := t.TempDir()
	for _, c := range []string{"irisd", "iris"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "../"+c).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}

	// The README's ports, mapped to free ones.
	portRe := regexp.MustCompile(`\b(7[0-2]0[1-3]|8080)\b`)
	ports := map[string]string{}
	for _, c := range cmds {
		for _, p := range portRe.FindAllString(c, -1) {
			if ports[p] == "" {
				ports[p] = freePort(t)
			}
		}
	}
	var script strings.Builder
	fmt.Fprintf(&script, "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nA_STATUS=127.0.0.1:%s\n", ports["7101"])
	script.WriteString(`ready() { for i in $(seq 400); do if eval "$1" >/dev/null 2>&1; then return 0; fi; sleep 0.05; done; echo "not ready: $1" >&2; return 1; }` + "\n")
	for _, c := range cmds[1:] { // the binaries are built
		c = portRe.ReplaceAllStringFunc(c, func(p string) string { return ports[p] })
		fmt.Fprintf(&script, "echo %s\n%s\n", shellQuote("$ "+c), c)
		for _, r := range readmeReady {
			if r.line.MatchString(strings.TrimSpace(strings.SplitN(c, "#", 2)[0])) {
				all := regexp.MustCompile(`\d{4,5}`).FindAllString(c, -1)
				fmt.Fprintf(&script, "ready %s\n", shellQuote(strings.ReplaceAll(r.ready, "PORT", all[len(all)-1])))
				break
			}
		}
	}
	script.WriteString("wait\n")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(cleanIrisEnv(), "PATH="+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the script left
		}
	})
	out, err := cmd.CombinedOutput()
	transcript := string(out)
	if err != nil {
		t.Fatalf("the README's commands failed: %v\nscript:\n%s\ntranscript:\n%s", err, script.String(), transcript)
	}
	t.Logf("transcript:\n%s", transcript)
	var printed strings.Builder // what the commands printed, without the commands
	for _, l := range strings.SplitAfter(transcript, "\n") {
		if !strings.HasPrefix(l, "$ ") {
			printed.WriteString(l)
		}
	}
	transcript = printed.String()
	for _, want := range []string{
		"peers: 2\n", "\nHELLO\n", "\nFROM STDIN\n", `"reply":"HI"}`, "\nto every member\n",
		"\nit works\nit works\n", "\nthrough a tunnel\n", `"node": "c"`, "  upper ", "  news.> ",
		"request: 20000 sent, 20000 replies", "pubsub: 20000 sent", "latency: p50 ",
	} {
		if !strings.Contains(transcript, want) {
			t.Errorf("the transcript lacks %q", want)
		}
	}
	if n := strings.Count(transcript, `"reply":"HI"}`); n != 2 {
		t.Errorf("request -json -count 2 printed %d replies", n)
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// cleanIrisEnv is the environment without IRIS_* variables.
func cleanIrisEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IRIS_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns a loopback port whose TCP and UDP sides were free.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			_, port, _ := net.SplitHostPort(addr)
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return ""
}
