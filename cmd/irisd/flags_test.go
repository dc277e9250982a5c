package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/overlay"
)

func TestParseArgs(t *testing.T) {
	dir := t.TempDir()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "net.key")
	if err := crypto.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := crypto.GenerateKey()
	badKeyFile := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(badKeyFile, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		errHas string               // "" means no error
		check  func(o *options) any // returns a description of what is wrong, or nil
	}{
		{
			name: "minimal", args: []string{"-net", "prod", "-key", keyFile},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "prod" && c.Key == key && c.Listen == "0.0.0.0:55556" &&
					c.RelayPort == 55555 && c.StatusAddr == "" && len(c.Join) == 0 &&
					c.Gossip == overlay.LANGossip() && o.logLevel == zerolog.InfoLevel && !o.ephemeralKey, o)
			},
		},
		{
			name: "every flag",
			args: []string{"-net", "prod", "-key", keyFile, "-listen", "10.0.0.5:6000", "-advertise", "1.2.3.4:6000",
				"-join", "10.0.0.1, 10.0.0.2:7000,,", "-relay", "6001", "-status", "127.0.0.1:6002",
				"-zone", "rack1", "-node", "n1", "-gossip", "local", "-log-level", "debug"},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Listen == "10.0.0.5:6000" && c.Advertise == "1.2.3.4:6000" &&
					slices.Equal(c.Join, []string{"10.0.0.1", "10.0.0.2:7000"}) && c.RelayPort == 6001 &&
					c.StatusAddr == "127.0.0.1:6002" && c.Zone == "rack1" && c.NodeID == "n1" &&
					c.Gossip == overlay.LocalGossip() && o.logLevel == zerolog.DebugLevel, o)
			},
		},
		{
			name: "environment",
			env:  map[string]string{envNet: "envnet", envKey: otherKey.Text(), envJoin: "a,b:1"},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "envnet" && c.Key == otherKey && slices.Equal(c.Join, []string{"a", "b:1"}), o)
			},
		},
		{
			name: "flags win over environment",
			args: []string{"-net", "flagnet", "-key", keyFile, "-join", "c"},
			env:  map[string]string{envNet: "envnet", envKey: otherKey.Text(), envJoin: "a,b"},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "flagnet" && c.Key == key && slices.Equal(c.Join, []string{"c"}), o)
			},
		},
		{
			name: "empty -join overrides IRIS_JOIN", args: []string{"-join", ""},
			env:   map[string]string{envNet: "n", envKey: otherKey.Text(), envJoin: "a"},
			check: func(o *options) any { return want(len(o.cfg.Join) == 0, o) },
		},
		{
			name: "dev", args: []string{"-dev"},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "dev" && c.Key != crypto.Key{} && o.ephemeralKey &&
					c.Listen == "127.0.0.1:55556" && c.StatusAddr == "127.0.0.1:55580" && c.RelayPort == 55555, o)
			},
		},
		{
			name: "dev ignores environment", args: []string{"-dev"},
			env: map[string]string{envNet: "prod", envKey: otherKey.Text(), envJoin: "10.0.0.1"},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "dev" && c.Key != otherKey && len(c.Join) == 0, o)
			},
		},
		{
			name: "dev with overrides",
			args: []string{"-dev", "-listen", "127.0.0.1:0", "-status", "127.0.0.1:0", "-relay", "0", "-key", keyFile},
			check: func(o *options) any {
				c := o.cfg
				return want(c.Network == "dev" && c.Key == key && !o.ephemeralKey && c.Listen == "127.0.0.1:0" &&
					c.StatusAddr == "127.0.0.1:0" && c.RelayPort == 0, o)
			},
		},
		{
			name: "dev without status", args: []string{"-dev", "-status", ""},
			check: func(o *options) any { return want(o.cfg.StatusAddr == "", o) },
		},
		{
			name: "drain timeout", args: []string{"-dev", "-drain-timeout", "12s"},
			check: func(o *options) any { return want(o.cfg.DrainTimeout == 12*time.Second, o) },
		},
		{
			name: "drain timeout from the environment", args: []string{"-net", "n", "-key", keyFile},
			env:   map[string]string{"IRIS_DRAIN_TIMEOUT": "250ms"},
			check: func(o *options) any { return want(o.cfg.DrainTimeout == 250*time.Millisecond, o) },
		},
		{
			name: "default drain timeout", args: []string{"-dev"},
			check: func(o *options) any { return want(o.cfg.DrainTimeout == daemon.DefaultDrainTimeout, o) },
		},
		{name: "bad drain env", args: []string{"-net", "n", "-key", keyFile}, env: map[string]string{"IRIS_DRAIN_TIMEOUT": "soon"}, errHas: "IRIS_DRAIN_TIMEOUT"},
		{name: "negative drain", args: []string{"-dev", "-drain-timeout", "-1s"}, errHas: "must not be negative"},
		{
			name: "link probe timeout from the environment", args: []string{"-net", "n", "-key", keyFile},
			env:   map[string]string{"IRIS_LINK_PROBE_TIMEOUT": "2s"},
			check: func(o *options) any { return want(o.cfg.LinkProbeTimeout == 2*time.Second, o) },
		},
		{name: "zero link probe timeout", args: []string{"-dev", "-link-probe-timeout", "0"}, errHas: "LinkProbeTimeout must be positive"},
		{name: "no network", args: []string{"-key", keyFile}, errHas: "no network name"},
		{name: "no key", args: []string{"-net", "n"}, errHas: "no network key"},
		{name: "missing key file", args: []string{"-net", "n", "-key", filepath.Join(dir, "nope")}, errHas: "no such file"},
		{name: "bad key file", args: []string{"-net", "n", "-key", badKeyFile}, errHas: "bad network key"},
		{name: "bad env key", env: map[string]string{envNet: "n", envKey: "short"}, errHas: "IRIS_KEY"},
		{name: "unknown flag", args: []string{"-bogus"}, errHas: "flag provided but not defined"},
		{name: "positional", args: []string{"-dev", "extra"}, errHas: `unexpected argument "extra"`},
		{name: "bad listen", args: []string{"-dev", "-listen", "nope"}, errHas: "listen address"},
		{name: "bad join", args: []string{"-dev", "-join", "h:0"}, errHas: "join address"},
		{name: "bad relay", args: []string{"-dev", "-relay", "70000"}, errHas: "-relay 70000"},
		{name: "bad relay type", args: []string{"-dev", "-relay", "x"}, errHas: "invalid value"},
		{name: "bad level", args: []string{"-dev", "-log-level", "loud"}, errHas: "-log-level"},
		{name: "bad gossip", args: []string{"-dev", "-gossip", "wan"}, errHas: "-gossip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			o, err := parseArgs(tt.args, getenv)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("parseArgs(%q) error = %v, want one containing %q", tt.args, err, tt.errHas)
				}
				if strings.Contains(err.Error(), otherKey.Text()) || strings.Contains(err.Error(), key.Text()) {
					t.Fatalf("error reveals a key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if bad := tt.check(o); bad != nil {
				t.Fatalf("parseArgs(%q) gave %+v", tt.args, bad)
			}
		})
	}
}

// want returns nil when ok, else the config (without its key) to report.
func want(ok bool, o *options) any {
	if ok {
		return nil
	}
	c := *o.cfg
	c.Key = crypto.Key{}
	c.Logger = zerolog.Nop()
	return struct {
		Cfg       daemon.Config
		Level     zerolog.Level
		Ephemeral bool
	}{c, o.logLevel, o.ephemeralKey}
}

func TestParseArgsHelp(t *testing.T) {
	if _, err := parseArgs([]string{"-h"}, func(string) string { return "" }); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parseArgs(-h) = %v, want flag.ErrHelp", err)
	}
	var b strings.Builder
	usage(&b)
	for _, s := range []string{"irisd keygen -o FILE", "IRIS_KEY", "-listen", "-relay", "-dev"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("usage lacks %q", s)
		}
	}
}

func TestLimitFlags(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case envNet:
			return "n"
		case envKey:
			return key.Text()
		}
		return ""
	}
	o, err := parseArgs([]string{"-max-message", "67108864", "-app-queue", "100", "-max-apps", "7", "-member-capacity", "9"}, env)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Relay.Limits.MaxMessageLen != 64<<20 || c.Relay.SendQueueLen != 100 || c.Relay.MaxConns != 7 || c.Cluster.MemberCapacity != 9 {
		t.Fatalf("limits not applied: relay %+v cluster %+v", c.Relay, c.Cluster)
	}
	for _, bad := range [][]string{{"-max-message", "-1"}, {"-max-message", "2147483648"}, {"-app-queue", "-5"}} {
		if _, err := parseArgs(bad, env); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestEnvForEveryFlag: every flag but -dev can be set from the
// environment, and the flag given on the command line wins.
func TestEnvForEveryFlag(t *testing.T) {
	var r rawFlags
	fs := newFlagSet(&r)
	values := map[string]string{} // flag → its String() once set from the environment
	env := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if f.Name == "dev" {
			if name != "" {
				t.Errorf("-dev has environment variable %s; a dev node must ignore the environment", name)
			}
			return
		}
		if !strings.HasPrefix(name, "IRIS_") {
			t.Errorf("-%s: environment variable %q", f.Name, name)
		}
		// A value the flag accepts, other than its default, whatever its
		// type (flags other helpers add included).
		v, want := "", ""
		for _, c := range []string{"true", "7", "3s", "0.5", "x", "1MiB", "127.0.0.1:9"} {
			scratch := newFlagSet(&rawFlags{})
			if c != f.DefValue && scratch.Set(f.Name, c) == nil {
				v, want = c, scratch.Lookup(f.Name).Value.String()
				break
			}
		}
		if v == "" {
			t.Logf("-%s: no test value found; its environment variable is not checked", f.Name)
			return
		}
		values[f.Name], env[name] = want, v
	})
	set := map[string]bool{"zone": true} // given on the command line
	fs.Set("zone", "flag")
	if err := applyEnv(fs, set, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		want, ok := values[f.Name]
		if f.Name == "zone" {
			want = "flag"
		}
		if ok && f.Value.String() != want {
			t.Errorf("-%s = %q after %s=%q, want %q", f.Name, f.Value.String(), envName(f.Name), env[envName(f.Name)], want)
		}
	})
	if envName("key") != envKeyFile || envName("max-message") != "IRIS_MAX_MESSAGE" {
		t.Errorf("envName: key %s, max-message %s", envName("key"), envName("max-message"))
	}
}

func TestEnvErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "net.key")
	key, _ := crypto.GenerateKey()
	if err := crypto.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env    map[string]string
		errHas string
	}{
		{map[string]string{envNet: "n", envKey: "net.key"}, `IRIS_KEY="net.key" looks like a file name, but IRIS_KEY takes the key itself`},
		{map[string]string{envNet: "n", envKey: keyFile}, "for a file, pass -key " + keyFile + " or set IRIS_KEY_FILE="},
		{map[string]string{envNet: "n", envKey: "short"}, "IRIS_KEY: key 1: bad network key"},
		{map[string]string{envNet: "n", envKey: key.Text(), envKeyFile: keyFile}, "both IRIS_KEY and IRIS_KEY_FILE"},
		{map[string]string{envNet: "n", envKeyFile: keyFile, "IRIS_RELAY": "many"}, `IRIS_RELAY="many": parse error`},
	} {
		_, err := parseArgs(nil, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.errHas) || strings.Count(err.Error(), "crypto:") > 0 {
			t.Errorf("env %v: error %v, want %q", tc.env, err, tc.errHas)
		}
	}
	o, err := parseArgs(nil, func(k string) string { return map[string]string{envNet: "n", envKeyFile: keyFile}[k] })
	if err != nil || o.cfg.Key != key {
		t.Fatalf("IRIS_KEY_FILE: %v", err)
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"join [a]: 1 error occurred:\n\t* failed to join a: refused\n\n":           "join [a]: failed to join a: refused",
		"2 errors occurred:\n\t* failed to join a: x\n\t* failed to join b: y\n\n": "failed to join a: x; failed to join b: y",
		"plain": "plain",
		"daemon: start overlay: overlay: listen x: bind: address already in use": "start overlay: listen x: bind: address already in use",
	} {
		if got := oneLine(tidy(errors.New(in))); got != want {
			t.Errorf("oneLine(tidy(%q)) = %q, want %q", in, got, want)
		}
	}
}

func TestUsagePlaceholders(t *testing.T) {
	var b strings.Builder
	usage(&b)
	if strings.Contains(b.String(), "-dev dev") {
		t.Errorf("usage shows a placeholder for the boolean -dev:\n%s", b.String())
	}
	for _, s := range []string{"irisd version", "IRIS_KEY_FILE", "IRIS_LOG_LEVEL"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("usage lacks %q", s)
		}
	}
}

// TestMemoryFlags: the memory limits come from flags or IRIS_* variables,
// a flag winning.
func TestMemoryFlags(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{envNet: "n", envKey: key.Text(), "IRIS_APP_MEMORY": "1000000",
		"IRIS_MESSAGE_TIMEOUT": "7s", "IRIS_MAX_PENDING": "99", "IRIS_MAX_INTEREST": "5000"}
	o, err := parseArgs([]string{"-max-interest", "6000", "-max-reply-bytes", "4096", "-max-app-interest", "2048"},
		func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	r, c := o.cfg.Relay, o.cfg.Cluster
	if r.MemoryBudget != 1000000 || r.MessageTimeout != 7*time.Second || r.MaxReplyBytes != 4096 ||
		r.MaxAppInterest != 2048 || c.MaxPendingRequests != 99 || c.MaxInterestBytes != 6000 {
		t.Fatalf("limits not applied: relay %+v cluster %+v", r, c)
	}
	vars["IRIS_MAX_PENDING"] = "many"
	if _, err := parseArgs(nil, func(k string) string { return vars[k] }); err == nil {
		t.Error("IRIS_MAX_PENDING=many accepted")
	}
	vars["IRIS_MAX_PENDING"] = ""
	for _, bad := range [][]string{{"-app-memory", "-1"}, {"-max-interest", "1073741824"}, {"-message-timeout", "-1s"}} {
		if _, err := parseArgs(bad, func(k string) string { return vars[k] }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
