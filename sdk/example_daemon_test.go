package sdk_test

import (
	"crypto/rand"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
)

// exampleDaemon starts an irisd in the example's process, standing in for
// the daemon that runs on every host, and returns its relay address and a
// function that stops it. Real apps connect to 127.0.0.1:55555, the default.
func exampleDaemon() (addr string, stop func()) {
	var key crypto.Key
	_, _ = rand.Read(key[:])
	cfg := daemon.DefaultConfig()
	cfg.Network, cfg.Key = "example", key
	cfg.Listen, cfg.RelayPort = "127.0.0.1:0", daemon.RelayAnyPort
	d, err := daemon.New(cfg)
	if err != nil {
		panic(err)
	}
	return d.RelayAddr(), func() { d.Close() }
}
