// Package scale holds the scale harness: N real daemons (the daemon
// package, real sockets on loopback, the local gossip profile) in one
// process, measured. The harness is a test; it runs only when asked:
//
//	IRIS_SCALE=16,64,256 go test -run TestScale -timeout 60m -v ./internal/scale/
//
// writes one row per size to a Markdown table (IRIS_SCALE_OUT, default
// scale-results.md in this directory). TestScaleSmoke runs N=8 in the
// normal suite (not under -short) with generous bounds. See docs/scale.md.
package scale
