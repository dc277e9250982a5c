package api

import (
	"errors"
	"fmt"
)

// Handshake constants and the transport default.
const (
	// ClientMagic opens a client's INIT.
	ClientMagic = "iris-client-magic"
	// RelayMagic opens the daemon's INIT and DENY.
	RelayMagic = "iris-relay-magic"
	// ProtocolVersion is the version every Iris v1 binding speaks and the
	// daemon answers INIT with.
	ProtocolVersion = "v1.0-draft2"
	// ProtocolV11 is the extended version our SDK offers: it adds the
	// opcodes from 0x0e (survey, push/pull, cancel, no members) and an
	// options block to both INITs (see InitOptions and InitInfo). The
	// daemon answers INIT with the version it chose.
	ProtocolV11 = "v1.1"
	// DefaultPort is the TCP port the daemon listens on, on 127.0.0.1 and [::1].
	DefaultPort = 55555
)

// ErrProtocol is wrapped by every error caused by bytes that break the
// protocol: an unknown opcode, an opcode sent in the wrong direction, a bool
// other than 0 or 1, a varint longer than 10 bytes or overflowing 64 bits, and
// a string or binary field longer than the Decoder's Limits. The daemon closes
// the offending connection, and only that one. Check it with errors.Is.
var ErrProtocol = errors.New("api: protocol violation")

// Protocol violations without per-occurrence detail, allocated once.
var (
	errVarintOverflow = fmt.Errorf("%w: varint overflows 64 bits", ErrProtocol)
	errVarintOverlong = fmt.Errorf("%w: varint longer than 10 bytes", ErrProtocol)
)

// DenyVersionReason returns the reason the daemon puts in a DENY when a client
// asks for a protocol version it does not speak, exactly as the v1 bindings
// expect it: "Unsupported protocol. Client: <v>. Iris: v1.0-draft2.".
func DenyVersionReason(clientVersion string) string {
	return "Unsupported protocol. Client: " + clientVersion + ". Iris: " + ProtocolVersion + "."
}

// Message is one relay protocol message in either direction. It is a union:
// Op selects which fields are on the wire, and the others are left zero by the
// Decoder and ignored by the encoders. The field table in the package
// documentation lists, for each opcode and direction, the fields used.
//
// A single struct (rather than one type per opcode behind an interface) lets a
// read loop decode every message into the same Message without allocating.
type Message struct {
	// Op is the opcode.
	Op Opcode
	// ID is the request id (reqId), tunnel id (tunId) or tunnel build id
	// (buildId), as the opcode says.
	ID uint64
	// ID2 is the second id of a client's TUN_CONFIRM: the tunId the client
	// picked for the tunnel it accepts (ID holds the buildId).
	ID2 uint64
	// Cluster is the target cluster (client BROADCAST, REQUEST, TUN_INIT) or
	// the cluster a service registers in (client INIT, "" = plain client).
	Cluster string
	// Topic is the topic of SUBSCRIBE, UNSUBSCRIBE, PUBLISH and SUBSCRIBED.
	// In a v1.1 session SUBSCRIBE's topic is a subject, possibly with
	// wildcards (see ValidSubject), and a delivered PUBLISH carries the
	// topic it was published to.
	Topic string
	// Payload is the binary field: message, request, reply, event or chunk;
	// in a v1.1 INIT, the options block that ends it (InitOptions from the
	// client, InitInfo from the daemon; see EncodeInitOptions).
	// The Decoder allocates a fresh slice per message; the caller keeps it.
	Payload []byte
	// Fault is the string carried instead of a reply (REPLY with Success
	// false) or the reason of a DENY, daemon CLOSE or daemon TUN_CLOSE
	// ("" = graceful).
	Fault string
	// Magic is the INIT or DENY magic string (ClientMagic or RelayMagic).
	Magic string
	// Version is the INIT protocol version.
	Version string
	// TimeoutMs is the timeout of REQUEST and client TUN_INIT, in milliseconds.
	TimeoutMs uint64
	// Success tells, in a REPLY that did not time out, whether Payload (true)
	// or Fault (false) follows.
	Success bool
	// TimedOut marks a daemon REPLY or TUN_CONFIRM for a request or tunnel
	// build that failed or timed out; no further fields follow it.
	TimedOut bool
	// Status is the outcome of a PUSH_ACK (PushAccepted, PushBusy), a v1.1
	// message.
	Status uint8
	// Call is the opcode of the app's call a NO_MEMBERS fails (REQUEST,
	// TUN_INIT, SURVEY or PUSH), a v1.1 message; ID is that call's id.
	Call Opcode
	// Size is sizeOrCont (TUN_TRANSFER: total message size on the first
	// chunk, 0 on the others), chunkLimit (daemon TUN_INIT and TUN_CONFIRM),
	// the byte credit granted by TUN_ALLOW, the quorum of a client SURVEY
	// (0 = wait for every member), the push credit granted by PULL or the
	// number of events lost that a GAP reports.
	Size uint64

	// Daemons lists, in a SUBSCRIBED (v1.1), the ids of the daemons that
	// had not confirmed the subscription when the daemon stopped waiting;
	// nil when every daemon did.
	Daemons []string

	// Survey holds the fields of SURVEY_ANSWER and SURVEY_END (v1.1), nil
	// for every other message: behind a pointer, they cost the hot-path
	// messages 8 bytes rather than 80.
	Survey *SurveyFields
}

// SurveyFields are the fields of the v1.1 survey results.
type SurveyFields struct {
	// Member and Daemon name the member (and its daemon) that sent a
	// SURVEY_ANSWER.
	Member string
	Daemon string
	// Asked and Answered are the counts of a SURVEY_END: members the
	// survey was sent to, and members that answered it.
	Asked    uint64
	Answered uint64
	// Missing lists, in a SURVEY_END, the members asked that did not
	// answer, and why.
	Missing []Missing
}

// Missing is a member that did not answer a survey.
type Missing struct {
	Member string // the member's name
	Daemon string // the id of its daemon
	// Reason is why: MissingLate, MissingFailed, MissingLost or
	// MissingQuorum, possibly followed by ": " and detail.
	Reason string
}

// Reasons of a Missing member. New reasons may be added; a client shows
// unknown ones as they are.
const (
	MissingLate   = "late"   // no answer by the deadline
	MissingFailed = "failed" // the member failed, refused or left before answering
	MissingLost   = "lost"   // its daemon failed or the link to it broke
	MissingQuorum = "quorum" // the survey stopped at its quorum before it answered
)

// PUSH_ACK statuses. New values may be added; a client treats unknown ones
// as a refusal.
const (
	PushAccepted uint8 = 0 // a member's queue took the push
	PushBusy     uint8 = 1 // every member's queue was full: try again later
)

// Reset zeroes m so it can be reused. It drops the reference to m.Payload
// without touching the bytes, so a caller that kept the slice may go on
// using it.
func (m *Message) Reset() { *m = Message{} }

// Limits bounds the lengths the Decoder accepts. Every declared length is
// checked against them before anything is allocated, so a peer cannot make
// the Decoder allocate more than it allows with a few bytes.
type Limits struct {
	// MaxStringLen is the longest string field accepted, in bytes: cluster,
	// topic, magic, version, fault and reason. Zero means the default, 64 KiB.
	// Names and reasons are short; raising it only widens the attack surface.
	MaxStringLen int
	// MaxMessageLen is the longest binary field accepted, in bytes: message,
	// request, reply, event and tunnel chunk. Zero means the default, 16 MiB.
	// Lowering it rejects (and so drops the connection of) apps that send
	// larger messages; raising it lets every connection hold that much
	// memory per message being decoded.
	MaxMessageLen int
}

// Default limits.
const (
	defaultMaxStringLen  = 64 << 10
	defaultMaxMessageLen = 16 << 20
)

// DefaultLimits returns the default Limits: strings up to 64 KiB and binary
// fields up to 16 MiB.
func DefaultLimits() Limits {
	return Limits{MaxStringLen: defaultMaxStringLen, MaxMessageLen: defaultMaxMessageLen}
}

// Validate reports whether l is usable. Negative limits are invalid; zero
// means the default.
func (l Limits) Validate() error {
	if l.MaxStringLen < 0 {
		return fmt.Errorf("api: Limits.MaxStringLen %d is negative", l.MaxStringLen)
	}
	if l.MaxMessageLen < 0 {
		return fmt.Errorf("api: Limits.MaxMessageLen %d is negative", l.MaxMessageLen)
	}
	return nil
}

// withDefaults returns l with zero fields replaced by their defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxStringLen == 0 {
		l.MaxStringLen = defaultMaxStringLen
	}
	if l.MaxMessageLen == 0 {
		l.MaxMessageLen = defaultMaxMessageLen
	}
	return l
}
