package crypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flynn/noise"
)

// peer is one side's handshake parameters.
type peer struct {
	network string
	key     Key
}

// handshakeOverPipe runs the initiator and the responder over net.Pipe. Each
// side closes its end when its Handshake fails, as a caller would; both ends
// are closed on return.
func handshakeOverPipe(t testing.TB, ini, resp peer) (si, sr *Session, errI, errR error) {
	t.Helper()
	ci, cr := net.Pipe()
	defer ci.Close()
	defer cr.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sr, errR = Handshake(cr, false, resp.network, resp.key)
		if errR != nil {
			cr.Close()
		}
	}()
	si, errI = Handshake(ci, true, ini.network, ini.key)
	if errI != nil {
		ci.Close()
	}
	<-done
	return si, sr, errI, errR
}

// mustPair returns the two Sessions of a successful handshake.
func mustPair(t testing.TB) (ini, resp *Session) {
	t.Helper()
	k := testKey()
	si, sr, errI, errR := handshakeOverPipe(t, peer{"prod", k}, peer{"prod", k})
	if errI != nil || errR != nil {
		t.Fatalf("handshake: initiator %v, responder %v", errI, errR)
	}
	return si, sr
}

func TestPrologueMatchesProtocolVersion(t *testing.T) {
	if want := fmt.Sprintf("iris/noise/v%d\x00", ProtocolVersion); prologuePrefix != want {
		t.Fatalf("prologuePrefix = %q, want %q", prologuePrefix, want)
	}
}

func TestHandshake(t *testing.T) {
	si, sr := mustPair(t)
	if si.send.cs.UnsafeKey() != sr.recv.cs.UnsafeKey() || si.recv.cs.UnsafeKey() != sr.send.cs.UnsafeKey() {
		t.Fatal("initiator and responder keys do not pair up")
	}
	if si.send.cs.UnsafeKey() == si.recv.cs.UnsafeKey() {
		t.Fatal("both directions use the same key")
	}
	// Two handshakes with the same key give different sessions (ephemeral DH).
	si2, _ := mustPair(t)
	if si.send.cs.UnsafeKey() == si2.send.cs.UnsafeKey() {
		t.Fatal("two handshakes produced the same session key")
	}
	for _, pair := range [][2]*Session{{si, sr}, {sr, si}} {
		rec, err := pair[0].Seal(nil, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		pt, err := pair[1].Open(nil, rec[RecordHeaderSize:])
		if err != nil || string(pt) != "hello" {
			t.Fatalf("Open = %q, %v", pt, err)
		}
	}
}

func TestHandshakeMismatch(t *testing.T) {
	k := testKey()
	other := k
	other[0] ^= 1
	tests := []struct {
		name      string
		ini, resp peer
	}{
		{"wrong key", peer{"prod", other}, peer{"prod", k}},
		{"wrong network", peer{"staging", k}, peer{"prod", k}},
		{"network prefix", peer{"prod", k}, peer{"prod2", k}},
		{"empty network", peer{"", k}, peer{"prod", k}},
		{"both wrong", peer{"staging", other}, peer{"prod", k}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, errI, errR := handshakeOverPipe(t, tt.ini, tt.resp)
			// The responder must fail on the first message...
			if !errors.Is(errR, ErrHandshake) || !strings.Contains(errR.Error(), "process message 1") {
				t.Fatalf("responder error = %v, want ErrHandshake at message 1", errR)
			}
			// ...before sending anything: the initiator sees the pipe close.
			if !errors.Is(errI, ErrHandshake) || !errors.Is(errI, io.EOF) ||
				!strings.Contains(errI.Error(), "read message 2 length") {
				t.Fatalf("initiator error = %v, want ErrHandshake wrapping io.EOF at message 2", errI)
			}
		})
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// validFirstMessage returns a framed first message from an initiator with
// key k on network.
func validFirstMessage(t testing.TB, network string, k Key) []byte {
	t.Helper()
	var buf bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(nil), &buf}
	if _, err := Handshake(rw, true, network, k); !errors.Is(err, io.EOF) {
		t.Fatalf("capturing message 1: %v", err)
	}
	if buf.Len() != 2+48 || binary.BigEndian.Uint16(buf.Bytes()) != 48 {
		t.Fatalf("message 1 is %d bytes: %x", buf.Len(), buf.Bytes())
	}
	return buf.Bytes()
}

func frame(n int, body []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(n)), body...)
}

func TestHandshakeResponderRejects(t *testing.T) {
	k := testKey()
	valid := validFirstMessage(t, "prod", k)
	flipped := bytes.Clone(valid)
	flipped[len(flipped)-1] ^= 1
	ephFlipped := bytes.Clone(valid)
	ephFlipped[2] ^= 1
	tests := []struct {
		name  string
		input []byte // what the fake initiator writes, then it closes
		step  string // expected in the error
		want  error  // also wrapped, besides ErrHandshake
		read  int    // bytes the responder may read; 0 means any
	}{
		{"nothing", nil, "read message 1 length", io.EOF, 0},
		{"half length", []byte{0}, "read message 1 length", io.ErrUnexpectedEOF, 0},
		{"zero length", frame(0, nil), "length 0 not in", nil, 2},
		{"oversize 1025", frame(1025, make([]byte, 1025)), "length 1025 not in", nil, 2},
		{"oversize max", frame(0xffff, make([]byte, 0xffff)), "length 65535 not in", nil, 2},
		{"truncated", valid[:20], "read message 1 body", io.ErrUnexpectedEOF, 0},
		{"garbage", frame(48, bytes.Repeat([]byte{0xa5}, 48)), "process message 1", nil, 0},
		{"short message", frame(31, make([]byte, 31)), "process message 1", noise.ErrShortMessage, 0},
		{"no tag", frame(32, valid[2:34]), "process message 1", nil, 0},
		{"tampered tag", flipped, "process message 1", nil, 0},
		{"tampered ephemeral", ephFlipped, "process message 1", nil, 0},
		{"max size garbage", frame(1024, bytes.Repeat([]byte{7}, 1024)), "process message 1", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci, cr := net.Pipe()
			defer ci.Close()
			go func() {
				ci.Write(tt.input) // fails once the responder gives up; that is fine
				ci.Close()
			}()
			counter := &countingReader{r: cr}
			rw := struct {
				io.Reader
				io.Writer
			}{counter, cr}
			s, err := Handshake(rw, false, "prod", k)
			cr.Close()
			if s != nil || !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), tt.step) {
				t.Fatalf("Handshake = %v, %v; want ErrHandshake mentioning %q", s, err, tt.step)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v does not wrap %v", err, tt.want)
			}
			if tt.read != 0 && counter.n != tt.read {
				t.Fatalf("responder read %d bytes, want %d (length checked before body)", counter.n, tt.read)
			}
		})
	}
}

func TestHandshakeInitiatorRejects(t *testing.T) {
	tests := []struct {
		name  string
		reply []byte
		step  string
	}{
		{"garbage", frame(48, bytes.Repeat([]byte{1}, 48)), "process message 2"},
		{"oversize", frame(2000, nil), "length 2000 not in"},
		{"truncated", frame(48, make([]byte, 10)), "read message 2 body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ci, cr := net.Pipe()
			defer ci.Close()
			go func() { // a fake responder: swallow message 1, answer with junk
				defer cr.Close()
				if _, err := io.ReadFull(cr, make([]byte, 50)); err == nil {
					cr.Write(tt.reply)
				}
			}()
			s, err := Handshake(ci, true, "prod", testKey())
			if s != nil || !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), tt.step) {
				t.Fatalf("Handshake = %v, %v; want ErrHandshake mentioning %q", s, err, tt.step)
			}
		})
	}
}

func TestHandshakeDeadline(t *testing.T) {
	ci, cr := net.Pipe()
	defer ci.Close()
	defer cr.Close()
	cr.SetDeadline(time.Now()) // already passed: the caller's deadline fires
	_, err := Handshake(cr, false, "prod", testKey())
	if !errors.Is(err, ErrHandshake) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error = %v, want ErrHandshake wrapping os.ErrDeadlineExceeded", err)
	}
}

func TestHandshakeWriteError(t *testing.T) {
	for _, initiator := range []bool{true, false} {
		ci, cr := net.Pipe()
		cr.Close() // the peer is gone: our write fails
		input := validFirstMessage(t, "prod", testKey())
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(input), ci}
		_, err := Handshake(rw, initiator, "prod", testKey())
		want := map[bool]string{true: "write message 1", false: "write message 2"}[initiator]
		if !errors.Is(err, ErrHandshake) || !errors.Is(err, io.ErrClosedPipe) || !strings.Contains(err.Error(), want) {
			t.Errorf("initiator=%v: error = %v, want ErrHandshake wrapping io.ErrClosedPipe at %q", initiator, err, want)
		}
		ci.Close()
	}
}
