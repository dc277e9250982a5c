package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// linkVersion is the data-link protocol version carried in the hello.
// History: 1 = initial.
const linkVersion = 1

// hello is the first message of a data link, sent by the dialer inside the
// encrypted stream right after the connection kind.
type hello struct {
	Version uint8  `codec:"v"`
	ID      string `codec:"id"`
}

// Hello answers, sent by the acceptor as one byte.
const (
	helloReject byte = 0
	helloAccept byte = 1
)

const maxHelloSize = 1024

var msgpackHandle = &codec.MsgpackHandle{}

func encodeMsgpack(v any) ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(v)
	return b, err
}

func decodeMsgpack(b []byte, v any) error {
	return codec.NewDecoderBytes(b, msgpackHandle).Decode(v)
}

// writeHello sends kind, then a 2-byte length and the msgpack hello.
func writeHello(w io.Writer, id string) error {
	body, err := encodeMsgpack(&hello{Version: linkVersion, ID: id})
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 3+len(body))
	msg = append(msg, connLink)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(body)))
	msg = append(msg, body...)
	_, err = w.Write(msg)
	return err
}

// readHello reads the hello that follows the connection kind.
func readHello(r io.Reader) (*hello, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n == 0 || n > maxHelloSize {
		return nil, fmt.Errorf("%w: hello of %d bytes", errBadFrame, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	var h hello
	if err := decodeMsgpack(buf, &h); err != nil {
		return nil, fmt.Errorf("%w: hello: %v", errBadFrame, err)
	}
	if h.Version != linkVersion || h.ID == "" || len(h.ID) > 128 {
		return nil, fmt.Errorf("%w: hello version %d id %q", errBadFrame, h.Version, h.ID)
	}
	return &h, nil
}

// acceptLink serves the rest of an inbound data link's setup: the hello,
// the duplicate-link decision, and the answer. It runs on the transport's
// handshake goroutine under the handshake deadline.
func (o *Overlay) acceptLink(sc *secureConn) {
	h, err := readHello(sc)
	if err != nil || h.ID == o.id || sc.buffered() != 0 {
		o.log.Warn().Str("remote", sc.RemoteAddr().String()).Err(err).Msg("bad data-link hello; closing")
		sc.Close()
		return
	}
	p := o.peerFor(h.ID, "")
	if p == nil { // closing
		sc.Close()
		return
	}
	l := newLink(p, sc.Conn, sc.sess, false)
	p.mu.Lock()
	// Both ends may dial at once: the link dialed by the smaller id wins.
	mine := p.dialing || (p.link != nil && p.link.outbound)
	accept := !p.removed && !(mine && o.id < h.ID)
	var old *link
	if accept {
		old = p.link
		p.link = l
		p.hasLink.Store(true)
	}
	p.mu.Unlock()
	ans := helloReject
	if accept {
		ans = helloAccept
	}
	if _, err := sc.Write([]byte{ans}); err != nil || !accept {
		sc.Close()
		if accept && !o.goIfOpen(l.run) { // run notices the closed conn and cleans up
			o.linkClosed(l)
		}
		return
	}
	_ = sc.Conn.SetDeadline(time.Time{})
	if old != nil {
		old.close(errors.New("replaced by a new inbound link"))
	}
	o.log.Debug().Str("peer", h.ID).Msg("data link up (inbound)")
	o.linkUp(p)
	p.signalLinkUp()
	if !o.goIfOpen(l.run) {
		l.close(ErrClosed)
		o.linkClosed(l)
	}
}

// ensureDial starts a dialer for p unless a link exists or one is running.
func (p *peer) ensureDial() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.link != nil || p.dialing || p.removed {
		return
	}
	p.dialing = true
	if !p.o.goIfOpen(p.dialLoop) {
		p.dialing = false
	}
}

func (p *peer) signalLinkUp() {
	select {
	case p.linkUpCh <- struct{}{}:
	default:
	}
}

// dialLoop establishes a link while frames wait. After a failure it drops
// the queued frames, tells the delegate, and retries with backoff if new
// frames arrived meanwhile or the peer is suspect.
func (p *peer) dialLoop() {
	o := p.o
	backoff := 50 * time.Millisecond
	for {
		p.mu.Lock()
		addr, removed := p.addr, p.removed
		p.mu.Unlock()
		if removed {
			p.stopDialing()
			return
		}
		var err error
		if addr == "" {
			err = errors.New("address unknown")
		} else {
			var up bool
			up, err = p.dialOnce(addr)
			if up {
				return
			}
			if err == nil { // refused as the duplicate: wait for the peer's own dial
				select {
				case <-p.linkUpCh:
					p.mu.Lock()
					ok := p.link != nil
					if ok {
						p.dialing = false
					}
					p.mu.Unlock()
					if ok {
						return
					}
				case <-time.After(time.Second):
				case <-o.shutdownCh:
					p.stopDialing()
					return
				}
				continue
			}
		}
		o.log.Debug().Str("peer", p.id).Err(err).Msg("data link dial failed")
		if n := p.drop(); n > 0 {
			o.stats.framesDropped.Add(uint64(n))
		}
		if !p.down.Swap(true) {
			o.refresh(p.id)
		}
		o.events.linkDown(p.id)
		select {
		case <-time.After(backoff):
		case <-o.shutdownCh:
			p.stopDialing()
			return
		}
		backoff = min(2*backoff, time.Second)
		p.mu.Lock()
		// Keep dialing while frames wait, or while the peer is down: a new
		// link is what clears it.
		if p.link != nil || (!p.queued() && !p.down.Load()) {
			p.dialing = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

func (p *peer) stopDialing() {
	p.mu.Lock()
	p.dialing = false
	p.mu.Unlock()
}

// dialOnce dials addr and offers a link. It reports up=true when the link
// was accepted and installed; up=false with a nil error when the peer
// refused it as the losing duplicate.
func (p *peer) dialOnce(addr string) (up bool, err error) {
	o := p.o
	conn, sess, err := o.tr.dialSecure(addr, o.cfg.DialTimeout)
	if err != nil {
		return false, err
	}
	sc := newSecureConn(conn, sess)
	_ = conn.SetDeadline(time.Now().Add(o.cfg.DialTimeout))
	if err := writeHello(sc, o.id); err != nil {
		conn.Close()
		return false, err
	}
	var ans [1]byte
	if _, err := io.ReadFull(sc, ans[:]); err != nil {
		conn.Close()
		return false, err
	}
	if ans[0] != helloAccept {
		conn.Close()
		return false, nil
	}
	_ = conn.SetDeadline(time.Time{})
	l := newLink(p, conn, sess, true)
	p.mu.Lock()
	if p.removed || p.link != nil {
		p.dialing = false
		p.mu.Unlock()
		conn.Close()
		return true, nil
	}
	p.link = l
	p.dialing = false
	p.hasLink.Store(true)
	p.mu.Unlock()
	o.log.Debug().Str("peer", p.id).Msg("data link up (outbound)")
	o.linkUp(p)
	if !o.goIfOpen(l.run) {
		l.close(ErrClosed)
		o.linkClosed(l)
	}
	return true, nil
}
