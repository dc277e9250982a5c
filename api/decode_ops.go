package api

// Per-opcode field decoders. Each reads the fields after the opcode byte in
// wire order; the field readers stop at the first error (see Decoder.err), so
// these never check errors themselves. Field names are the spec's.

// clientBody decodes the fields of a client → daemon message.
func (d *Decoder) clientBody(m *Message) {
	switch m.Op {
	case OpInit:
		d.readClientInit(m)
	case OpClose:
		// No fields.
	case OpBroadcast:
		d.readClientBroadcast(m)
	case OpRequest:
		d.readClientRequest(m)
	case OpReply:
		d.readClientReply(m)
	case OpSubscribe, OpUnsubscribe:
		m.Topic = d.str("topic")
	case OpPublish:
		d.readClientPublish(m)
	case OpTunInit:
		d.readClientTunInit(m)
	case OpTunConfirm:
		d.readClientTunConfirm(m)
	case OpTunAllow:
		d.readTunAllow(m)
	case OpTunTransfer:
		d.readTunTransfer(m)
	case OpTunClose:
		m.ID = d.uvarint("tunId")
	case OpSurvey:
		d.readClientRequest(m)
		m.Size = d.uvarint("quorum")
	case OpPush:
		m.ID = d.uvarint("pushId")
		m.Cluster = d.str("cluster")
		m.Payload = d.blob("message")
	case OpPull:
		m.Size = d.uvarint("count")
	case OpCancel:
		m.ID = d.uvarint("reqId")
	default: // OpDeny, daemon-only extensions, unknown
		d.badOpcode(m, "by clients")
	}
}

// daemonBody decodes the fields of a daemon → client message.
func (d *Decoder) daemonBody(m *Message) {
	switch m.Op {
	case OpInit:
		d.readDaemonInit(m)
	case OpDeny:
		d.readDaemonDeny(m)
	case OpClose:
		m.Fault = d.str("reason")
	case OpBroadcast:
		m.Payload = d.blob("message")
	case OpRequest:
		d.readDaemonRequest(m)
	case OpReply:
		d.readDaemonReply(m)
	case OpPublish:
		d.readPublish(m)
	case OpTunInit:
		d.readDaemonTunInit(m)
	case OpTunConfirm:
		d.readDaemonTunConfirm(m)
	case OpTunAllow:
		d.readTunAllow(m)
	case OpTunTransfer:
		d.readTunTransfer(m)
	case OpTunClose:
		d.readDaemonTunClose(m)
	case OpSurvey:
		d.readDaemonRequest(m)
	case OpSurveyAnswer:
		d.readSurveyAnswer(m)
	case OpSurveyEnd:
		d.readSurveyEnd(m)
	case OpPush:
		m.Payload = d.blob("message")
	case OpPushAck:
		m.ID = d.uvarint("pushId")
		m.Status = d.byte("status")
	case OpCancel:
		m.ID = d.uvarint("reqId")
	case OpNoMembers:
		m.Call = Opcode(d.byte("op"))
		m.ID = d.uvarint("id")
	case OpSubscribed:
		d.readSubscribed(m)
	case OpGap:
		m.Size = d.uvarint("count")
	default: // OpSubscribe, OpUnsubscribe, client-only extensions, unknown
		d.badOpcode(m, "by the daemon")
	}
}

// INIT  string(magic) string(version) string(cluster)
func (d *Decoder) readClientInit(m *Message) {
	m.Magic = d.str("magic")
	m.Version = d.str("version")
	m.Cluster = d.str("cluster")
	d.readOptions(m)
}

// readOptions reads the binary(options) that ends a v1.1 INIT.
func (d *Decoder) readOptions(m *Message) {
	if d.err != nil || !HasOptions(m.Version) {
		return
	}
	n, ok := d.length("options", min(d.lim.MaxStringLen, maxOptionsLen))
	if !ok {
		return
	}
	b, err := d.readN(n)
	if err != nil {
		d.fail("options", err)
		return
	}
	m.Payload = b
}

// SURVEY_ANSWER  varint(surveyId) string(member) string(daemon) binary(answer)
func (d *Decoder) readSurveyAnswer(m *Message) {
	m.ID = d.uvarint("surveyId")
	m.Survey = &SurveyFields{}
	m.Survey.Member = d.str("member")
	m.Survey.Daemon = d.str("daemon")
	m.Payload = d.blob("answer")
}

// minMissingLen is the smallest encoding of a missing member: three empty
// strings.
const minMissingLen = 3

// SURVEY_END  varint(surveyId) varint(asked) varint(answered) varint(count)
// count × (string(member) string(daemon) string(reason)). The list grows as
// its entries arrive; count is only checked against what MaxMessageLen
// bytes could hold.
func (d *Decoder) readSurveyEnd(m *Message) {
	m.ID = d.uvarint("surveyId")
	f := &SurveyFields{}
	m.Survey = f
	f.Asked = d.uvarint("asked")
	f.Answered = d.uvarint("answered")
	n, ok := d.length("count", d.lim.MaxMessageLen/minMissingLen)
	if !ok || n == 0 {
		return
	}
	f.Missing = make([]Missing, 0, min(n, 64))
	for range n {
		var e Missing
		e.Member = d.str("member")
		e.Daemon = d.str("daemon")
		e.Reason = d.str("reason")
		if d.err != nil {
			return
		}
		f.Missing = append(f.Missing, e)
	}
}

// BROADCAST  string(cluster) binary(message)
func (d *Decoder) readClientBroadcast(m *Message) {
	m.Cluster = d.str("cluster")
	m.Payload = d.blob("message")
}

// REQUEST  varint(reqId) string(cluster) binary(request) varint(timeoutMs)
func (d *Decoder) readClientRequest(m *Message) {
	m.ID = d.uvarint("reqId")
	m.Cluster = d.str("cluster")
	m.Payload = d.blob("request")
	m.TimeoutMs = d.uvarint("timeoutMs")
}

// REPLY  varint(reqId) bool(success) then binary(reply) if success, else string(fault)
func (d *Decoder) readClientReply(m *Message) {
	m.ID = d.uvarint("reqId")
	m.Success = d.boolean("success")
	d.readReplyResult(m)
}

// readReplyResult reads the reply or fault that follows a REPLY's success flag.
func (d *Decoder) readReplyResult(m *Message) {
	if d.err != nil {
		return
	}
	if m.Success {
		m.Payload = d.blob("reply")
	} else {
		m.Fault = d.str("fault")
	}
}

// PUBLISH  string(topic) binary(event), the same in both directions.
func (d *Decoder) readPublish(m *Message) {
	m.Topic = d.str("topic")
	m.Payload = d.blob("event")
}

// readClientPublish is readPublish with the event borrowed from the
// buffer up to borrowMax bytes (SetBorrow).
func (d *Decoder) readClientPublish(m *Message) {
	m.Topic = d.str("topic")
	m.Payload = d.blobBorrow("event", d.borrowMax)
}

// TUN_INIT  varint(tunId) string(cluster) varint(timeoutMs)
func (d *Decoder) readClientTunInit(m *Message) {
	m.ID = d.uvarint("tunId")
	m.Cluster = d.str("cluster")
	m.TimeoutMs = d.uvarint("timeoutMs")
}

// TUN_CONFIRM  varint(buildId) varint(tunId)
func (d *Decoder) readClientTunConfirm(m *Message) {
	m.ID = d.uvarint("buildId")
	m.ID2 = d.uvarint("tunId")
}

// TUN_ALLOW  varint(tunId) varint(bytes), the same in both directions.
func (d *Decoder) readTunAllow(m *Message) {
	m.ID = d.uvarint("tunId")
	m.Size = d.uvarint("bytes")
}

// TUN_TRANSFER  varint(tunId) varint(sizeOrCont) binary(payload), the same in
// both directions. Chunk sizes are checked against chunkLimit by the relay,
// which knows the tunnel; here only Limits.MaxMessageLen applies.
func (d *Decoder) readTunTransfer(m *Message) {
	m.ID = d.uvarint("tunId")
	m.Size = d.uvarint("sizeOrCont")
	m.Payload = d.blob("payload")
}

// INIT  string(magic) string(version), then binary(options) in v1.1
func (d *Decoder) readDaemonInit(m *Message) {
	m.Magic = d.str("magic")
	m.Version = d.str("version")
	d.readOptions(m)
}

// DENY  string(magic) string(reason)
func (d *Decoder) readDaemonDeny(m *Message) {
	m.Magic = d.str("magic")
	m.Fault = d.str("reason")
}

// REQUEST  varint(reqId) binary(request) varint(timeoutMs)
func (d *Decoder) readDaemonRequest(m *Message) {
	m.ID = d.uvarint("reqId")
	m.Payload = d.blob("request")
	m.TimeoutMs = d.uvarint("timeoutMs")
}

// REPLY  varint(reqId) bool(timedOut) then, if not timed out, bool(success)
// and binary(reply) | string(fault)
func (d *Decoder) readDaemonReply(m *Message) {
	m.ID = d.uvarint("reqId")
	m.TimedOut = d.boolean("timedOut")
	if d.err != nil || m.TimedOut {
		return
	}
	m.Success = d.boolean("success")
	d.readReplyResult(m)
}

// TUN_INIT  varint(buildId) varint(chunkLimit)
func (d *Decoder) readDaemonTunInit(m *Message) {
	m.ID = d.uvarint("buildId")
	m.Size = d.uvarint("chunkLimit")
}

// TUN_CONFIRM  varint(tunId) bool(timedOut) then, if not timed out, varint(chunkLimit)
func (d *Decoder) readDaemonTunConfirm(m *Message) {
	m.ID = d.uvarint("tunId")
	m.TimedOut = d.boolean("timedOut")
	if d.err != nil || m.TimedOut {
		return
	}
	m.Size = d.uvarint("chunkLimit")
}

// TUN_CLOSE  varint(tunId) string(reason)
func (d *Decoder) readDaemonTunClose(m *Message) {
	m.ID = d.uvarint("tunId")
	m.Fault = d.str("reason")
}

// SUBSCRIBED  string(topic) varint(count) count × string(daemon). The list
// grows as its entries arrive; count is only checked against what
// MaxMessageLen bytes could hold (an empty string is one byte).
func (d *Decoder) readSubscribed(m *Message) {
	m.Topic = d.str("topic")
	n, ok := d.length("count", d.lim.MaxMessageLen)
	if !ok || n == 0 {
		return
	}
	m.Daemons = make([]string, 0, min(n, 64))
	for range n {
		s := d.str("daemon")
		if d.err != nil {
			return
		}
		m.Daemons = append(m.Daemons, s)
	}
}
