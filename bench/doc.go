// Package bench holds side-by-side benchmarks that quote Iris against NATS
// and against a raw-TCP floor, measured in the same run on loopback.
//
// Everything runs in-process: Iris daemons (package daemon) with apps on the
// Go SDK, embedded NATS servers with the nats.go client, and a minimal
// length-prefixed TCP forwarder. The benchmarks are in the package's test
// files; run them with run.sh (see README.md). The package itself exports
// nothing.
package bench
