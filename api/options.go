package api

import (
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// InitOptions is the options block a v1.1 client sends at the end of its
// INIT, as a msgpack map. Fields are only ever added; a daemon ignores keys
// it does not know, and a missing key means the field's zero value.
type InitOptions struct {
	// Name is the member name a service asks for in its cluster. It must be
	// unique in the cluster as far as the daemon knows; a name in use is
	// refused with DENY (reason FaultNameTaken). "" means the daemon picks
	// a stable default, "<daemon id>/<n>".
	Name string `codec:"name,omitempty"`
}

// InitInfo is the options block the daemon sends at the end of its v1.1
// INIT answer, as a msgpack map. Fields are only ever added; a client
// ignores keys it does not know.
type InitInfo struct {
	// Daemon is the daemon's id in its network.
	Daemon string `codec:"daemon,omitempty"`
	// Member is the member name the service got ("" for a plain client).
	Member string `codec:"member,omitempty"`
	// MaxMessage is the largest binary field (message, request, reply,
	// event, chunk) the daemon accepts, in bytes; a longer one breaks the
	// protocol and closes the connection, so clients refuse it locally.
	MaxMessage uint64 `codec:"max_message,omitempty"`
	// PushWindow is how many of the app's pushes may wait for their
	// PUSH_ACK at once; more break the protocol.
	PushWindow uint64 `codec:"push_window,omitempty"`
}

// FaultNameTaken starts the reason of the DENY that refuses a member name
// already used in its cluster.
const FaultNameTaken = "iris: member name taken"

// FaultCancelled is the fault of the REPLY that answers a request the app
// cancelled with CANCEL (exactly one REPLY per REQUEST still holds).
const FaultCancelled = "iris: request cancelled"

// maxOptionsLen bounds an options block; msgpack maps of a few short
// strings and numbers are far smaller.
const maxOptionsLen = 16 << 10

// optionsHandle decodes options blocks: collections are grown as their
// elements arrive, never allocated from a declared length.
var optionsHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.MaxInitLen = 64
	h.MaxDepth = 8
	return h
}()

// EncodeInitOptions returns o as the msgpack block of a client INIT.
func EncodeInitOptions(o *InitOptions) []byte { return encodeOptions(o) }

// DecodeInitOptions decodes a client INIT's options block. An empty block
// means all defaults. Errors wrap ErrProtocol.
func DecodeInitOptions(b []byte) (InitOptions, error) {
	var o InitOptions
	return o, decodeOptions(b, &o)
}

// EncodeInitInfo returns i as the msgpack block of a daemon INIT.
func EncodeInitInfo(i *InitInfo) []byte { return encodeOptions(i) }

// DecodeInitInfo decodes a daemon INIT's options block. An empty block
// means all defaults. Errors wrap ErrProtocol.
func DecodeInitInfo(b []byte) (InitInfo, error) {
	var i InitInfo
	return i, decodeOptions(b, &i)
}

func encodeOptions(v any) []byte {
	var b []byte
	if err := codec.NewEncoderBytes(&b, optionsHandle).Encode(v); err != nil {
		// Plain structs of strings and integers always encode.
		panic("api: encode options: " + err.Error())
	}
	return b
}

func decodeOptions(b []byte, v any) (err error) {
	if len(b) == 0 {
		return nil
	}
	if len(b) > maxOptionsLen {
		return fmt.Errorf("%w: options block of %d bytes, limit %d", ErrProtocol, len(b), maxOptionsLen)
	}
	defer func() {
		if r := recover(); r != nil { // the codec must never take a daemon down
			err = fmt.Errorf("%w: options block: %v", ErrProtocol, r)
		}
	}()
	if err := codec.NewDecoderBytes(b, optionsHandle).Decode(v); err != nil {
		return fmt.Errorf("%w: options block: %v", ErrProtocol, err)
	}
	return nil
}
