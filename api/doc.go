// Package api is the codec for the relay protocol spoken between local apps
// and irisd over TCP (port DefaultPort on 127.0.0.1 and [::1]). It is the
// Iris v1 protocol, v1.0-draft2, byte for byte, so every existing v1 binding
// works against irisd; the daemon's relay and the Go SDK both use this package.
//
// The package only encodes and decodes: it opens no connections, starts no
// goroutines and keeps no session state. Ordering rules (INIT first, one REPLY
// per REQUEST, credit accounting, chunk limits) belong to the relay and the
// SDK.
//
// # Encoding
//
// A message is one opcode byte followed by its fields, with no length prefix:
// a reader parses every field to find the next opcode. A varint is unsigned
// LEB128 of at most 10 bytes; a bool is one byte, 0x00 or 0x01; a string or
// binary field is varint(len) followed by the bytes. The layout of each
// message is in the specification, docs/relay-protocol.md, and next to each
// per-opcode function in decode_ops.go and encode.go.
//
// Messages are written with AppendClient or AppendDaemon, which append to a
// caller's buffer, and read with a Decoder's ReadClient or ReadDaemon, which
// decode into a caller's Message. Lengths are checked against Limits before
// anything is allocated; a violation wraps ErrProtocol and the connection must
// be closed.
//
// # Protocol flow
//
// Handshake:
//
//   - The app connects and sends INIT(ClientMagic, version, cluster). An empty
//     cluster makes a plain client; a non-empty one registers a service.
//   - The daemon answers INIT(RelayMagic, ProtocolVersion), by which time a
//     service is already a member of its cluster, or DENY(RelayMagic, reason)
//     and closes. An unsupported version is refused with
//     DenyVersionReason(version).
//
// Steady state, app to daemon:
//
//   - BROADCAST(cluster, message) goes to every member, the sender included.
//   - REQUEST(reqId, cluster, request, timeoutMs) goes to one member. The
//     daemon owns the timeout and sends exactly one REPLY for it: the result,
//     a fault, or timed out (05 reqId 01) at the deadline.
//   - REPLY(reqId, success, reply | fault) answers a request the daemon
//     delivered. A late one is dropped; success=false with an empty fault
//     counts as a timeout.
//   - SUBSCRIBE(topic), UNSUBSCRIBE(topic), PUBLISH(topic, event); an event
//     goes to every subscriber, the publisher included.
//
// Steady state, daemon to app: BROADCAST(message) and REQUEST(reqId, request,
// timeoutMs) to services only, REPLY(reqId, timedOut, success, reply |
// fault) for the app's own requests, and PUBLISH(topic, event) for its
// subscriptions. Request ids are chosen by whoever sends the REQUEST; the two
// directions are separate id spaces.
//
// Tunnels, outbound (app C builds a tunnel to cluster, member S accepts):
//
//   - C→D TUN_INIT(tunId, cluster, timeoutMs)
//   - D→S TUN_INIT(buildId, chunkLimit); S→D TUN_CONFIRM(buildId, tunId');
//     from then on only each side's own tunId is used.
//   - D→C TUN_CONFIRM(tunId, timedOut=false, chunkLimit), or
//     TUN_CONFIRM(tunId, timedOut=true) on failure or timeout.
//   - Both ends grant byte credit with TUN_ALLOW(tunId, bytes) and send
//     TUN_TRANSFER(tunId, sizeOrCont, chunk): the first chunk of a message
//     carries its total size, the rest 0. The daemon returns credit as it
//     forwards chunks.
//   - C→D TUN_CLOSE(tunId); D→C TUN_CLOSE(tunId, "") and the far end gets
//     TUN_CLOSE(itsTunId, reason), reason "" meaning graceful.
//
// Close: the app sends CLOSE; the daemon unregisters it, lets queued handlers
// finish, answers CLOSE("") and closes the socket. A bare socket close is a
// drop to a binding, so a graceful close is always answered.
//
// Protocol v1.1 (ProtocolV11): a client that offers it in INIT, and whose
// INIT answer names it, may use the opcodes from 0x0e: SURVEY,
// SURVEY_ANSWER, SURVEY_END, PUSH, PUSH_ACK, PULL, CANCEL, NO_MEMBERS,
// SUBSCRIBED and GAP; its SUBSCRIBE names a subject, possibly with
// wildcards (ValidSubject, MatchSubject), and is answered with SUBSCRIBED.
// Both v1.1 INITs end with an options block (InitOptions, InitInfo). A
// Decoder accepts the v1.1 opcodes only after EnableV11, so a v1.0-draft2
// session rejects them exactly like unknown opcodes. The layouts are in
// docs/relay-protocol.md and next to each encoder and decoder.
//
// # Message fields
//
// Message is a union; this table lists the fields each opcode uses, in wire
// order ("–" means the opcode is never sent in that direction and is a
// protocol violation if received). Unused fields decode as zero and are
// ignored when encoding.
//
//	op    name          client → daemon                       daemon → client
//	0x00  INIT          Magic Version Cluster                 Magic Version
//	0x01  DENY          –                                     Magic Fault(reason)
//	0x02  CLOSE         (none)                                Fault(reason)
//	0x03  BROADCAST     Cluster Payload                       Payload
//	0x04  REQUEST       ID(reqId) Cluster Payload TimeoutMs   ID(reqId) Payload TimeoutMs
//	0x05  REPLY         ID(reqId) Success,                    ID(reqId) TimedOut,
//	                      then Payload if Success else Fault    then if !TimedOut: Success,
//	                                                            then Payload if Success else Fault
//	0x06  SUBSCRIBE     Topic                                 –
//	0x07  UNSUBSCRIBE   Topic                                 –
//	0x08  PUBLISH       Topic Payload                         Topic Payload
//	0x09  TUN_INIT      ID(tunId) Cluster TimeoutMs           ID(buildId) Size(chunkLimit)
//	0x0a  TUN_CONFIRM   ID(buildId) ID2(tunId)                ID(tunId) TimedOut,
//	                                                            then if !TimedOut: Size(chunkLimit)
//	0x0b  TUN_ALLOW     ID(tunId) Size(bytes)                 ID(tunId) Size(bytes)
//	0x0c  TUN_TRANSFER  ID(tunId) Size(sizeOrCont) Payload    ID(tunId) Size(sizeOrCont) Payload
//	0x0d  TUN_CLOSE     ID(tunId)                             ID(tunId) Fault(reason)
//
// v1.1 only (after EnableV11):
//
//	op    name          client → daemon                       daemon → client
//	0x00  INIT (v1.1)   Magic Version Cluster Payload(options) Magic Version Payload(info)
//	0x0e  SURVEY        ID(surveyId) Cluster Payload          ID(reqId) Payload TimeoutMs
//	                      TimeoutMs Size(quorum)
//	0x0f  SURVEY_ANSWER –                                     ID(surveyId) Survey.Member
//	                                                            Survey.Daemon Payload
//	0x10  SURVEY_END    –                                     ID(surveyId) Survey.Asked
//	                                                            Survey.Answered Survey.Missing
//	0x11  PUSH          ID(pushId) Cluster Payload            Payload
//	0x12  PUSH_ACK      –                                     ID(pushId) Status
//	0x13  PULL          Size(count)                           –
//	0x14  CANCEL        ID(reqId)                             ID(reqId)
//	0x15  NO_MEMBERS    –                                     Call ID
//	0x16  SUBSCRIBED    –                                     Topic Daemons
//	0x17  GAP           –                                     Size(count)
//
// Mind the asymmetries: REPLY and TUN_CONFIRM carry a timedOut flag only from
// the daemon; CLOSE and TUN_CLOSE carry a reason only from the daemon; INIT
// carries a cluster only from the client, and DENY is daemon-only; the client
// forms of BROADCAST, REQUEST and TUN_INIT name a cluster, the daemon's do not.
package api
