package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// frameType is the first byte of every cluster frame between daemons.
// ONLY APPEND TO THIS LIST: the values are part of the protocol.
type frameType uint8

const (
	fRequest   frameType = 0x01 // id, timeoutMs, cluster, payload
	fReply     frameType = 0x02 // id, status, payload or fault text
	fTable     frameType = 0x03 // msgpack interest table
	fTableReq  frameType = 0x04 // ask for the sender's table
	fBroadcast frameType = 0x05 // cluster, payload
	fPublish   frameType = 0x06 // topic, payload
	fTunOpen   frameType = 0x07 // opener's tunnel id, timeoutMs, window, cluster
	fTunOpened frameType = 0x08 // opener's tunnel id, status, acceptor's tunnel id, window
	fTunData   frameType = 0x09 // receiver's tunnel id, sizeOrCont, chunk
	fTunCredit frameType = 0x0a // receiver's tunnel id, bytes
	fTunClose  frameType = 0x0b // receiver's tunnel id, reason

	// 0x20 to 0x2f: the v1.1 patterns (ext.go). A daemon that predates
	// them skips them.
	fSurvey       frameType = 0x20 // survey id, timeoutMs, cluster, question
	fSurveyAsked  frameType = 0x21 // survey id, count, count × member name
	fSurveyAnswer frameType = 0x22 // survey id, status, member name, answer or fault text
	fPush         frameType = 0x23 // push id, cluster, message
	fPushAck      frameType = 0x24 // push id, status (pushAccepted, pushBusy)
	fCancel       frameType = 0x25 // request id at the origin, cluster
	fTableAck     frameType = 0x26 // the sender holds this daemon's table at least at this version[, deltaCapable]
	fTableDelta   frameType = 0x27 // msgpack tableDelta: the sender's table from one version to the next
)

// replyStatus is the status byte of a reply frame. ONLY APPEND.
type replyStatus uint8

const (
	repOK          replyStatus = 0 // payload is the reply
	repFault       replyStatus = 1 // payload is the fault text
	repUnavailable replyStatus = 2 // no member could take it; the requester may retry elsewhere
)

var errBadFrame = errors.New("cluster: bad frame")

// maxNameLen bounds cluster names and topics on the wire.
const maxNameLen = 64 << 10

func appendName(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes a frame without allocating: names come back as slices of
// the frame.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", errBadFrame)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: truncated", errBadFrame)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) name() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > maxNameLen || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: name of %d bytes", errBadFrame, n)
		return nil
	}
	s := r.b[:n:n]
	r.b = r.b[n:]
	return s
}

// rest returns what is left: the payload.
func (r *reader) rest() []byte {
	b := r.b
	r.b = nil
	return b
}

func requestHead(id, timeoutMs uint64, cluster string) []byte {
	h := make([]byte, 0, 1+2*binary.MaxVarintLen64+binary.MaxVarintLen32+len(cluster))
	h = append(h, byte(fRequest))
	h = binary.AppendUvarint(h, id)
	h = binary.AppendUvarint(h, timeoutMs)
	return appendName(h, cluster)
}

func replyHead(id uint64, st replyStatus) []byte {
	h := make([]byte, 0, 2+binary.MaxVarintLen64)
	h = append(h, byte(fReply))
	h = binary.AppendUvarint(h, id)
	return append(h, byte(st))
}

// tunHead encodes a tunnel frame header: type and uvarint fields.
func tunHead(t frameType, fields ...uint64) []byte {
	h := make([]byte, 1, 1+len(fields)*binary.MaxVarintLen64)
	h[0] = byte(t)
	for _, f := range fields {
		h = binary.AppendUvarint(h, f)
	}
	return h
}

func nameHead(t frameType, name string) []byte {
	h := make([]byte, 0, 1+binary.MaxVarintLen32+len(name))
	h = append(h, byte(t))
	return appendName(h, name)
}
