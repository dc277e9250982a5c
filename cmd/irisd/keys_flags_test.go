package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iris-mesh/iris/crypto"
)

func TestPprofFlag(t *testing.T) {
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	base := map[string]string{envNet: "n", envKey: key.Text()}
	env := func(extra map[string]string) func(string) string {
		return func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		}
	}
	for _, tt := range []struct {
		name   string
		args   []string
		env    map[string]string
		want   bool
		errHas string
	}{
		{name: "off by default", args: []string{"-status", "127.0.0.1:0"}},
		{name: "flag", args: []string{"-status", "127.0.0.1:0", "-pprof"}, want: true},
		{name: "env", args: []string{"-status", "127.0.0.1:0"}, env: map[string]string{"IRIS_PPROF": "1"}, want: true},
		{name: "flag wins", args: []string{"-status", "127.0.0.1:0", "-pprof=false"}, env: map[string]string{"IRIS_PPROF": "true"}},
		{name: "dev", args: []string{"-dev", "-pprof"}, want: true},
		{name: "needs status", args: []string{"-pprof"}, errHas: "-pprof needs a status address"},
		{name: "bad env", args: []string{"-status", "127.0.0.1:0"}, env: map[string]string{"IRIS_PPROF": "yes please"}, errHas: "IRIS_PPROF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseArgs(tt.args, env(tt.env))
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("error = %v; want one containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Pprof != tt.want {
				t.Fatalf("Pprof = %v; want %v", o.cfg.Pprof, tt.want)
			}
		})
	}
}

func TestKeyListFlags(t *testing.T) {
	dir := t.TempDir()
	var ks [5]crypto.Key
	for i := range ks {
		k, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		ks[i] = k
	}
	write := func(name string, keys ...crypto.Key) string {
		var b strings.Builder
		b.WriteString("# rotation in progress\n")
		for _, k := range keys {
			b.WriteString(k.Text() + "\n")
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	two := write("two", ks[1], ks[0])
	five := write("five", ks[:]...)
	noenv := func(string) string { return "" }
	o, err := parseArgs([]string{"-net", "n", "-key", two}, noenv)
	if err != nil || o.cfg.Key != ks[1] || len(o.cfg.SecondaryKeys) != 1 || o.cfg.SecondaryKeys[0] != ks[0] || o.keyFile != two {
		t.Fatalf("-key with two keys: %v", err)
	}
	env := map[string]string{envNet: "n", envKey: ks[2].Text() + ", " + ks[3].Text()}
	o, err = parseArgs(nil, func(k string) string { return env[k] })
	if err != nil || o.cfg.Key != ks[2] || len(o.cfg.SecondaryKeys) != 1 || o.cfg.SecondaryKeys[0] != ks[3] || o.keyFile != "" {
		t.Fatalf("IRIS_KEY with two keys: %v", err)
	}
	if _, err := parseArgs([]string{"-net", "n", "-key", five}, noenv); err == nil || !strings.Contains(err.Error(), "more than 4 keys") {
		t.Fatalf("five keys: %v", err)
	}
	env[envKey] = ks[0].Text() + "," + ks[0].Text()
	if _, err := parseArgs(nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Fatalf("repeated key: %v", err)
	}
}
