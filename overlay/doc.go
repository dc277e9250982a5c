// Package overlay joins irisd daemons of one network into an encrypted
// peer-to-peer overlay and moves opaque frames between them.
//
// Every daemon uses one host:port for all overlay traffic. UDP carries
// memberlist's SWIM gossip (failure detection, membership), encrypted with a
// key derived from the network key. Every TCP connection on the port is first
// authenticated with a Noise NNpsk0 handshake keyed by the network key and
// bound to the network name; its first encrypted record says what it is:
//
//	's'  a memberlist stream (push/pull state sync, TCP fallback probes)
//	'l'  a data link, followed by a hello naming the dialing node
//
// A data link is one TCP connection per peer pair, opened on demand by the
// first Send. When both ends dial at once, the link dialed by the node with
// the smaller id wins and the other dial is refused before it carries a frame.
// Each link has one reader goroutine and one writer goroutine. The writer
// drains the peer's bounded queues (control first, then bulk), packs many
// frames into each AEAD record of up to 64 KiB and many records into each
// write, and flushes when the queues run empty: low latency at low load,
// batching at high load.
//
// The plaintext stream of a link is a sequence of frames:
//
//	kind (1 byte) | length (4 bytes, big endian) | payload (length bytes)
//
// Kind 'F' carries an upper-layer frame; unknown kinds are skipped so newer
// daemons can talk to older ones. Lengths are checked against MaxFrameSize
// before allocating.
//
// The overlay knows nothing of clusters: upper layers hand it opaque frames
// and receive frames and peer events through a Delegate.
package overlay
