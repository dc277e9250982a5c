package api

import (
	"encoding/binary"
	"fmt"
)

// Options blocks end the v1.1 INITs. A block is a sequence of fields, each
// string(key) binary(value), up to the end of the block; a string value is
// its bytes, an integer value a varint. Fields are only ever added: a
// reader skips keys it does not know, a missing key means the zero value,
// and a repeated key keeps its last value. Writers omit zero values.

// InitOptions is the options block a v1.1 client sends at the end of its
// INIT.
type InitOptions struct {
	// Name ("name") is the member name a service asks for in its cluster.
	// It must be unique in the cluster as far as the daemon knows; a name
	// in use is refused with DENY (reason starting with FaultNameTaken).
	// "" means the daemon picks a stable default, "<daemon id>/<n>".
	Name string
}

// InitInfo is the options block the daemon sends at the end of its v1.1
// INIT answer.
type InitInfo struct {
	// Daemon ("daemon") is the daemon's id in its network.
	Daemon string
	// Member ("member") is the member name the service got ("" for a plain
	// client).
	Member string
	// MaxMessage ("max_message") is the largest binary field (message,
	// request, reply, event, chunk) the daemon accepts, in bytes; a longer
	// one breaks the protocol and closes the connection, so clients refuse
	// it locally.
	MaxMessage uint64
	// PushWindow ("push_window") is how many of the app's pushes may wait
	// for their PUSH_ACK at once; more break the protocol.
	PushWindow uint64
	// Unconfirmed ("unconfirmed") lists the daemons that had not confirmed
	// a service's registration when the daemon answered its INIT (it waits
	// a bounded time for every daemon alive to know the member); empty when
	// all did. The value is a list: string(daemon id) repeated.
	Unconfirmed []string
	// Subjects ("subjects", integer 1) says the daemon implements the
	// subscriptions of protocol v1.1: it answers every SUBSCRIBE with
	// SUBSCRIBED, matches wildcard subjects and sends GAP. A v1.1 daemon
	// without it (an early one) treats topics as exact names and never
	// answers SUBSCRIBE.
	Subjects bool
}

// FaultNameTaken starts the reason of the DENY that refuses a member name
// already used in its cluster.
const FaultNameTaken = "iris: member name taken"

// FaultCancelled is the fault of the REPLY that answers a request the app
// cancelled with CANCEL (exactly one REPLY per REQUEST still holds).
const FaultCancelled = "iris: request cancelled"

// maxOptionsLen bounds an options block; a few short fields are far
// smaller.
const maxOptionsLen = 16 << 10

// EncodeInitOptions returns o as the options block of a client INIT.
func EncodeInitOptions(o *InitOptions) []byte {
	return appendStringField(nil, "name", o.Name)
}

// DecodeInitOptions decodes a client INIT's options block. Errors wrap
// ErrProtocol.
func DecodeInitOptions(b []byte) (InitOptions, error) {
	var o InitOptions
	err := decodeFields(b, func(key string, v []byte) error {
		if key == "name" {
			o.Name = string(v)
		}
		return nil
	})
	return o, err
}

// EncodeInitInfo returns i as the options block of a daemon INIT.
func EncodeInitInfo(i *InitInfo) []byte {
	b := appendStringField(nil, "daemon", i.Daemon)
	b = appendStringField(b, "member", i.Member)
	b = appendUintField(b, "max_message", i.MaxMessage)
	b = appendUintField(b, "push_window", i.PushWindow)
	b = appendListField(b, "unconfirmed", i.Unconfirmed)
	if i.Subjects {
		b = appendUintField(b, "subjects", 1)
	}
	return b
}

// DecodeInitInfo decodes a daemon INIT's options block. Errors wrap
// ErrProtocol.
func DecodeInitInfo(b []byte) (InitInfo, error) {
	var i InitInfo
	err := decodeFields(b, func(key string, v []byte) error {
		var err error
		switch key {
		case "daemon":
			i.Daemon = string(v)
		case "member":
			i.Member = string(v)
		case "max_message":
			i.MaxMessage, err = fieldUint(key, v)
		case "push_window":
			i.PushWindow, err = fieldUint(key, v)
		case "unconfirmed":
			i.Unconfirmed, err = fieldList(key, v)
		case "subjects":
			var x uint64
			x, err = fieldUint(key, v)
			i.Subjects = x != 0
		}
		return err
	})
	return i, err
}

func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(appendString(b, key), v)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendString(b, key)
	b = binary.AppendUvarint(b, uint64(varintLen(v)))
	return binary.AppendUvarint(b, v)
}

func appendListField(b []byte, key string, v []string) []byte {
	if len(v) == 0 {
		return b
	}
	var val []byte
	for _, s := range v {
		val = appendString(val, s)
	}
	return appendBytes(appendString(b, key), val)
}

// fieldList decodes a list value: string(item) repeated to its end.
func fieldList(key string, v []byte) ([]string, error) {
	var out []string
	for len(v) > 0 {
		item, rest, ok := cutField(v)
		if !ok {
			return nil, fmt.Errorf("%w: options field %q: truncated list item", ErrProtocol, key)
		}
		out = append(out, string(item))
		v = rest
	}
	return out, nil
}

func varintLen(v uint64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutUvarint(tmp[:], v)
}

// fieldUint decodes an integer value: exactly one varint.
func fieldUint(key string, v []byte) (uint64, error) {
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, fmt.Errorf("%w: options field %q: bad varint", ErrProtocol, key)
	}
	return x, nil
}

// decodeFields calls f with each field of an options block.
func decodeFields(b []byte, f func(key string, v []byte) error) error {
	if len(b) > maxOptionsLen {
		return fmt.Errorf("%w: options block of %d bytes, limit %d", ErrProtocol, len(b), maxOptionsLen)
	}
	for len(b) > 0 {
		key, rest, ok := cutField(b)
		if !ok {
			return fmt.Errorf("%w: options block: truncated key", ErrProtocol)
		}
		v, rest, ok := cutField(rest)
		if !ok {
			return fmt.Errorf("%w: options field %q: truncated value", ErrProtocol, key)
		}
		if err := f(string(key), v); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// cutField splits varint(len) and len bytes off the front of b.
func cutField(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
