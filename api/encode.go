package api

import "encoding/binary"

// AppendClient appends the client → daemon encoding of m to dst and returns
// the extended slice. It allocates only if dst lacks capacity. Fields that m.Op
// does not use in this direction are ignored; the SDK calls it.
//
// It panics if m.Op is not sent by clients (DENY, or an opcode this package
// does not define): the caller builds the message, so that is a programming
// error, never a consequence of network input.
func AppendClient(dst []byte, m *Message) []byte {
	dst = append(dst, byte(m.Op))
	switch m.Op {
	case OpInit:
		return appendClientInit(dst, m)
	case OpClose:
		return dst
	case OpBroadcast:
		return appendBytes(appendString(dst, m.Cluster), m.Payload)
	case OpRequest:
		return appendClientRequest(dst, m)
	case OpReply:
		return appendClientReply(dst, m)
	case OpSubscribe, OpUnsubscribe:
		return appendString(dst, m.Topic)
	case OpPublish:
		return appendBytes(appendString(dst, m.Topic), m.Payload)
	case OpTunInit:
		return appendClientTunInit(dst, m)
	case OpTunConfirm:
		return binary.AppendUvarint(binary.AppendUvarint(dst, m.ID), m.ID2)
	case OpTunAllow:
		return binary.AppendUvarint(binary.AppendUvarint(dst, m.ID), m.Size)
	case OpTunTransfer:
		return appendTunTransfer(dst, m)
	case OpTunClose:
		return binary.AppendUvarint(dst, m.ID)
	case OpSurvey:
		return appendClientSurvey(dst, m)
	case OpPush:
		return appendBytes(appendString(binary.AppendUvarint(dst, m.ID), m.Cluster), m.Payload)
	case OpPull:
		return binary.AppendUvarint(dst, m.Size)
	case OpCancel:
		return binary.AppendUvarint(dst, m.ID)
	}
	panic("api: AppendClient: opcode " + m.Op.String() + " is not sent by clients")
}

// AppendDaemon appends the daemon → client encoding of m to dst and returns
// the extended slice. It allocates only if dst lacks capacity. Fields that m.Op
// does not use in this direction are ignored; the relay calls it.
//
// It panics if m.Op is not sent by the daemon (SUBSCRIBE, UNSUBSCRIBE, or an
// opcode this package does not define), a programming error.
func AppendDaemon(dst []byte, m *Message) []byte {
	dst = append(dst, byte(m.Op))
	switch m.Op {
	case OpInit:
		dst = appendString(appendString(dst, m.Magic), m.Version)
		return appendOptions(dst, m)
	case OpDeny:
		return appendString(appendString(dst, m.Magic), m.Fault)
	case OpClose:
		return appendString(dst, m.Fault)
	case OpBroadcast:
		return appendBytes(dst, m.Payload)
	case OpRequest:
		return appendDaemonRequest(dst, m)
	case OpReply:
		return appendDaemonReply(dst, m)
	case OpPublish:
		return appendBytes(appendString(dst, m.Topic), m.Payload)
	case OpTunInit:
		return binary.AppendUvarint(binary.AppendUvarint(dst, m.ID), m.Size)
	case OpTunConfirm:
		return appendDaemonTunConfirm(dst, m)
	case OpTunAllow:
		return binary.AppendUvarint(binary.AppendUvarint(dst, m.ID), m.Size)
	case OpTunTransfer:
		return appendTunTransfer(dst, m)
	case OpTunClose:
		return appendString(binary.AppendUvarint(dst, m.ID), m.Fault)
	case OpSurvey: // a survey delivered to a member: the REQUEST layout
		return appendDaemonRequest(dst, m)
	case OpSurveyAnswer:
		return appendSurveyAnswer(dst, m)
	case OpSurveyEnd:
		return appendSurveyEnd(dst, m)
	case OpPush:
		return appendBytes(dst, m.Payload)
	case OpPushAck:
		return append(binary.AppendUvarint(dst, m.ID), m.Status)
	case OpCancel:
		return binary.AppendUvarint(dst, m.ID)
	case OpNoMembers:
		return binary.AppendUvarint(append(dst, byte(m.Call)), m.ID)
	case OpSubscribed:
		return appendSubscribed(dst, m)
	case OpGap:
		return binary.AppendUvarint(dst, m.Size)
	}
	panic("api: AppendDaemon: opcode " + m.Op.String() + " is not sent by the daemon")
}

// INIT  string(magic) string(version) string(cluster)
func appendClientInit(dst []byte, m *Message) []byte {
	dst = appendString(dst, m.Magic)
	dst = appendString(dst, m.Version)
	dst = appendString(dst, m.Cluster)
	return appendOptions(dst, m)
}

// appendOptions appends binary(options) to a v1.1 INIT; other versions have
// no options block.
func appendOptions(dst []byte, m *Message) []byte {
	if !HasOptions(m.Version) {
		return dst
	}
	return appendBytes(dst, m.Payload)
}

// HasOptions reports whether an INIT of the given version ends with an
// options block: true for ProtocolV11.
func HasOptions(version string) bool { return version == ProtocolV11 }

// SURVEY  varint(surveyId) string(cluster) binary(question) varint(timeoutMs) varint(quorum)
func appendClientSurvey(dst []byte, m *Message) []byte {
	dst = appendClientRequest(dst, m)
	return binary.AppendUvarint(dst, m.Size)
}

// SURVEY_ANSWER  varint(surveyId) string(member) string(daemon) binary(answer)
func appendSurveyAnswer(dst []byte, m *Message) []byte {
	var f SurveyFields
	if m.Survey != nil {
		f = *m.Survey
	}
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendString(dst, f.Member)
	dst = appendString(dst, f.Daemon)
	return appendBytes(dst, m.Payload)
}

// SURVEY_END  varint(surveyId) varint(asked) varint(answered) varint(count)
// count × (string(member) string(daemon) string(reason))
func appendSurveyEnd(dst []byte, m *Message) []byte {
	var f SurveyFields
	if m.Survey != nil {
		f = *m.Survey
	}
	dst = binary.AppendUvarint(dst, m.ID)
	dst = binary.AppendUvarint(dst, f.Asked)
	dst = binary.AppendUvarint(dst, f.Answered)
	dst = binary.AppendUvarint(dst, uint64(len(f.Missing)))
	for i := range f.Missing {
		dst = appendString(dst, f.Missing[i].Member)
		dst = appendString(dst, f.Missing[i].Daemon)
		dst = appendString(dst, f.Missing[i].Reason)
	}
	return dst
}

// REQUEST  varint(reqId) string(cluster) binary(request) varint(timeoutMs)
func appendClientRequest(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendString(dst, m.Cluster)
	dst = appendBytes(dst, m.Payload)
	return binary.AppendUvarint(dst, m.TimeoutMs)
}

// REPLY  varint(reqId) bool(success) then binary(reply) if success, else string(fault)
func appendClientReply(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	return appendReplyResult(dst, m)
}

// appendReplyResult appends bool(success) and then the reply or the fault.
func appendReplyResult(dst []byte, m *Message) []byte {
	dst = appendBool(dst, m.Success)
	if m.Success {
		return appendBytes(dst, m.Payload)
	}
	return appendString(dst, m.Fault)
}

// TUN_INIT  varint(tunId) string(cluster) varint(timeoutMs)
func appendClientTunInit(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendString(dst, m.Cluster)
	return binary.AppendUvarint(dst, m.TimeoutMs)
}

// TUN_TRANSFER  varint(tunId) varint(sizeOrCont) binary(payload)
func appendTunTransfer(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = binary.AppendUvarint(dst, m.Size)
	return appendBytes(dst, m.Payload)
}

// REQUEST  varint(reqId) binary(request) varint(timeoutMs)
func appendDaemonRequest(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendBytes(dst, m.Payload)
	return binary.AppendUvarint(dst, m.TimeoutMs)
}

// REPLY  varint(reqId) bool(timedOut) then, if not timed out, bool(success)
// and binary(reply) | string(fault)
func appendDaemonReply(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendBool(dst, m.TimedOut)
	if m.TimedOut {
		return dst
	}
	return appendReplyResult(dst, m)
}

// TUN_CONFIRM  varint(tunId) bool(timedOut) then, if not timed out, varint(chunkLimit)
func appendDaemonTunConfirm(dst []byte, m *Message) []byte {
	dst = binary.AppendUvarint(dst, m.ID)
	dst = appendBool(dst, m.TimedOut)
	if m.TimedOut {
		return dst
	}
	return binary.AppendUvarint(dst, m.Size)
}

// appendString appends varint(len(s)) and the bytes of s.
func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendBytes appends varint(len(b)) and b.
func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// appendBool appends 0x01 for true and 0x00 for false.
func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// SUBSCRIBED  string(topic) varint(count) count × string(daemon)
func appendSubscribed(dst []byte, m *Message) []byte {
	dst = appendString(dst, m.Topic)
	dst = binary.AppendUvarint(dst, uint64(len(m.Daemons)))
	for _, d := range m.Daemons {
		dst = appendString(dst, d)
	}
	return dst
}

// AppendDaemonHead is AppendDaemon without the bytes of m.Payload when the
// payload is the last field of m's encoding (BROADCAST, PUBLISH, PUSH,
// TUN_TRANSFER): it appends everything before them and reports true, and
// the caller writes m.Payload right after (one writev, no copy of a large
// payload). For other opcodes it appends nothing and reports false.
func AppendDaemonHead(dst []byte, m *Message) ([]byte, bool) {
	switch m.Op {
	case OpBroadcast, OpPush:
		dst = append(dst, byte(m.Op))
	case OpPublish:
		dst = appendString(append(dst, byte(m.Op)), m.Topic)
	case OpTunTransfer:
		dst = binary.AppendUvarint(binary.AppendUvarint(append(dst, byte(m.Op)), m.ID), m.Size)
	default:
		return dst, false
	}
	return binary.AppendUvarint(dst, uint64(len(m.Payload))), true
}
