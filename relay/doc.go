// Package relay is the daemon side of the Iris relay protocol
// (v1.0-draft2, docs/relay-protocol.md): apps on the host connect to their
// irisd over TCP, and the relay turns their messages into calls on the
// cluster layer and the cluster's deliveries into messages to the app.
//
// # Protocol flow
//
// A connection starts with the app's INIT. A wrong magic closes it, an
// unsupported version gets DENY(api.DenyVersionReason) and is closed, and a
// non-empty cluster makes the connection a service: it is registered with
// the cluster before INIT is answered, so a request sent right after the
// answer can reach it. Then, per message from the app:
//
//	REQUEST(id, cluster, request, timeoutMs)  cluster.Node.Request; exactly one REPLY
//	                                          comes back: result, fault, or 05 id 01
//	                                          (timed out) at the deadline
//	REPLY(id, ...)                            answers request id delivered to this service
//	BROADCAST(cluster, msg)                   cluster.Node.Broadcast
//	SUBSCRIBE / UNSUBSCRIBE(topic)            cluster.Node.Subscribe / Subscription.Close
//	PUBLISH(topic, event)                     cluster.Node.Publish
//	TUN_*                                     the tunnel layer (for now every build times out)
//	CLOSE                                     graceful end, answered with CLOSE("")
//
// and from the cluster to the app: REQUEST(id, request, timeoutMs) to
// services, numbered 1, 2, 3... per connection, BROADCAST(msg) to services,
// and PUBLISH(topic, event) for the app's subscriptions.
//
// A client that offers v1.1 (api.ProtocolV11) gets a v1.1 session (v11.go):
// an INIT answer with the daemon's limits and the member's name, and the
// v1.1 opcodes: SURVEY (cluster.Node.Survey; SURVEY_ANSWERs, then one
// SURVEY_END), PUSH (cluster.Node.Push; one PUSH_ACK), PULL (push credit
// a member grants), CANCEL (cluster.Node.Cancel), and NO_MEMBERS at once for
// a request, tunnel, survey or push to a cluster without members. Its
// SUBSCRIBEs name subjects with wildcards (cluster.Node.SubscribeSubject),
// each answered by SUBSCRIBED once every daemon knows it
// (cluster.Node.Confirm), as is a service's INIT; it gets each event once
// however many of its subjects match, and GAP(count) for the events dropped
// because it did not read fast enough (subs.go). A v1.0-draft2 session is
// exactly as before; as a member it gets survey questions as plain
// REQUESTs.
//
// The daemon owns every timeout: it keeps a timer for each request it
// delivers to a service and abandons the request at its deadline (the
// requester's daemon then answers it as timed out); a later REPLY to it is
// dropped. A REPLY to an id never delivered is a protocol violation. A
// timeout of 0 (in REQUEST or TUN_INIT) counts as the minimum, 1 ms.
//
// # Connections
//
// Each connection has a read loop, which decodes and dispatches, and a
// write loop, which drains a bounded queue and writes everything queued
// with one write. Broadcasts and events that do not fit the queue are
// dropped and counted (a slow consumer never stalls the daemon) and
// requests for a service whose queue is full are refused, so the cluster
// places them elsewhere. Answers to the app's own requests are never
// dropped: every request reserves its answer's place in the queue
// (Config.MaxPendingRequests).
//
// A protocol violation (api.ErrProtocol) closes the offending connection
// and only that one. A graceful CLOSE, from the app or from Shutdown,
// unregisters the service and ends its subscriptions, fails the requests
// it still holds with "iris: service closed", writes what is queued and
// then CLOSE, and closes the socket; a lost connection is torn down the
// same way without the CLOSE.
package relay
