package main

import (
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
		{name: "env", args: []string{"-status", "127.0.0.1:0"}, env: map[string]string{envPprof: "1"}, want: true},
		{name: "flag wins", args: []string{"-status", "127.0.0.1:0", "-pprof=false"}, env: map[string]string{envPprof: "true"}},
		{name: "dev", args: []string{"-dev", "-pprof"}, want: true},
		{name: "needs status", args: []string{"-pprof"}, errHas: "-pprof needs a status address"},
		{name: "bad env", args: []string{"-status", "127.0.0.1:0"}, env: map[string]string{envPprof: "yes please"}, errHas: "IRIS_PPROF"},
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
