// Package cluster maps cluster names and topics to the daemons that serve
// them, and carries requests, replies, broadcasts and events between them.
//
// Every daemon keeps an interest table: the clusters its local apps are
// members of (with member counts and capacity) and the topics they subscribe
// to. A table has a version; the version rides in the daemon's gossiped
// metadata, and the table itself is pushed to every peer over the encrypted
// data link when it changes and pulled by any peer whose copy is older
// (anti-entropy). From the tables each daemon builds an index: cluster name →
// local members and remote nodes, topic → local subscribers and remote nodes.
//
// A request is balanced by the requester's daemon: healthy targets first,
// then the local host, then the same zone, then the rest; within a tier,
// the less loaded of two random choices, load being in-flight requests over
// advertised capacity. The chosen remote daemon picks among its own members
// the same way. The requester's daemon owns the deadline and answers every
// request exactly once: a result, a fault, or a timeout. A request whose
// target daemon fails or whose link breaks is faulted at once.
//
// Protocol v1.1 adds three patterns (ext.go). A survey asks every member of
// a cluster: each remote daemon reports the members it asked, then each
// answer, so the origin ends the survey as soon as the last member answered
// or failed, and names the missing ones (late, failed, or lost with their
// daemon). A push goes to one member that has push credit (PushMember),
// chosen at random in proportion to the members each daemon has, and is
// acknowledged accepted or busy. A request can be cancelled (Cancel): the
// serving daemon tells its member (Canceler). Members have names, unique
// per cluster as far as the tables show, carried in the interest tables.
//
// Frames between daemons start with a type byte. Hot-path frames (request,
// reply, broadcast, publish) use a compact binary header with uvarint
// integers and length-prefixed names, followed by the payload bytes as they
// came from the app; tables are msgpack.
package cluster
