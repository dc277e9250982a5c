package overlay

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"

	"github.com/iris-mesh/iris/crypto"
)

// Connection kinds, the first plaintext byte an initiator sends on a new
// TCP connection. ONLY APPEND: the values are part of the protocol.
const (
	connStream byte = 's' // memberlist stream
	connLink   byte = 'l' // data link
)

const maxUDPPacket = 65536

// transport implements memberlist.Transport on the overlay's single port and
// hands inbound data links to the Overlay. It owns the listeners and every
// goroutine serving them.
type transport struct {
	o   *Overlay
	tcp *net.TCPListener
	udp *net.UDPConn

	packetCh   chan *memberlist.Packet
	streamCh   chan net.Conn
	shutdownCh chan struct{}
	shutdown   atomic.Bool
	wg         sync.WaitGroup

	hsSem chan struct{} // bounds goroutines serving inbound connections in their handshake
	adm   *admission    // pending inbound connections: limits and eviction

	refusedFull    atomic.Uint64 // inbound connections closed because hsSem was full
	refusedAuth    atomic.Uint64 // inbound handshakes that failed
	gossipOut      atomic.Uint64 // gossip packet bytes sent (UDP; push/pull streams not counted)
	gossipIn       atomic.Uint64 // gossip packet bytes received (UDP)
	authLogLimiter rateLimiter
	shedLogLimiter rateLimiter
	dialLogLimiter rateLimiter
	mlLog          limitedLog // memberlist's logger writes here
}

// listen binds TCP and UDP on the same host:port. With port 0 it picks a
// port that is free for both.
func listen(addr string) (*net.TCPListener, *net.UDPConn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("bad port %q", portStr)
	}
	var lastErr error
	for range 10 {
		tl, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, err
		}
		tcp := tl.(*net.TCPListener)
		bound := tcp.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(bound)))
		if err == nil {
			udp := ul.(*net.UDPConn)
			_ = udp.SetReadBuffer(4 << 20)
			return tcp, udp, nil
		}
		tcp.Close()
		lastErr = err
		if port != 0 {
			break
		}
	}
	return nil, nil, fmt.Errorf("bind udp: %w", lastErr)
}

func newTransport(o *Overlay, tcp *net.TCPListener, udp *net.UDPConn) *transport {
	t := &transport{
		o:          o,
		tcp:        tcp,
		udp:        udp,
		packetCh:   make(chan *memberlist.Packet, 256),
		streamCh:   make(chan net.Conn, 16),
		shutdownCh: make(chan struct{}),
		// Evicted connections release their goroutine a moment after their
		// slot: twice the slots bounds the goroutines meanwhile.
		hsSem: make(chan struct{}, 2*o.cfg.MaxPendingHandshakes),
		adm:   newAdmission(o.cfg.MaxPendingHandshakes, o.cfg.MaxPendingHandshakesPerIP),
	}
	t.wg.Go(t.acceptLoop)
	t.wg.Go(t.udpLoop)
	return t
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	bound := t.tcp.Addr().(*net.TCPAddr)
	if port == 0 {
		port = bound.Port
	}
	if ip != "" {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return nil, 0, fmt.Errorf("overlay: advertise address %q is not an IP", ip)
		}
		return parsed, port, nil
	}
	if !bound.IP.IsUnspecified() {
		return bound.IP, port, nil
	}
	// Listening on every interface: advertise the host's private address
	// (a local lookup of interface addresses; nothing is sent).
	priv, err := sockaddr.GetPrivateIP()
	if err != nil || priv == "" {
		t.o.log.Warn().Msg("no private IP found to advertise; advertising 127.0.0.1 (set -advertise)")
		return net.IPv4(127, 0, 0, 1), port, nil
	}
	return net.ParseIP(priv), port, nil
}

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	t.gossipOut.Add(uint64(len(b)))
	return time.Now(), err
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// DialTimeout implements memberlist.Transport: a Noise-authenticated stream.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, sess, err := t.dialSecure(addr, timeout)
	if err != nil {
		return nil, err
	}
	sc := newSecureConn(conn, sess)
	if _, err := sc.Write([]byte{connStream}); err != nil {
		conn.Close()
		return nil, err
	}
	return sc, nil
}

// dialSecure connects to addr and runs the Noise handshake as initiator.
// The returned conn has no deadline set.
func (t *transport) dialSecure(addr string, timeout time.Duration) (net.Conn, *crypto.Session, error) {
	d := net.Dialer{Timeout: timeout}
	if ip := t.tcp.Addr().(*net.TCPAddr).IP; !ip.IsUnspecified() {
		// Listening on one address, dial from it too: peers see the
		// address they know this daemon by, and per-source admission
		// limits count daemons that share a host (many on loopback) apart.
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	sess, err := crypto.Handshake(conn, true, t.o.cfg.Network, t.o.dialKey())
	if err != nil {
		conn.Close()
		if errors.Is(err, crypto.ErrHandshake) && t.dialLogLimiter.allow(time.Now()) {
			t.o.log.Warn().Str("peer", addr).Err(err).Msg(dialFailReason(err))
		}
		return nil, nil, fmt.Errorf("overlay: dial %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, sess, nil
}

// Shutdown implements memberlist.Transport. It closes the listeners and
// waits for every goroutine of the transport.
func (t *transport) Shutdown() error {
	if t.shutdown.Swap(true) {
		return nil
	}
	close(t.shutdownCh)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *transport) udpLoop() {
	buf := make([]byte, maxUDPPacket)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.o.log.Error().Err(err).Msg("udp read failed")
			return
		}
		if n < 1 {
			continue
		}
		t.gossipIn.Add(uint64(n))
		pkt := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: ts}
		select {
		case t.packetCh <- pkt:
		case <-t.shutdownCh:
			return
		}
	}
}

func (t *transport) acceptLoop() {
	var backoff time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			// Back off on temporary errors (EMFILE and the like), as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.o.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
				continue
			case <-t.shutdownCh:
				return
			}
		}
		backoff = 0
		select {
		case t.hsSem <- struct{}{}:
		default:
			t.refusedFull.Add(1)
			conn.SetLinger(0)
			conn.Close()
			continue
		}
		pc := t.adm.admit(conn, time.Now(), t.o.cfg.FirstMessageTimeout, t.o.cfg.HandshakeTimeout)
		t.wg.Go(func() {
			defer func() { <-t.hsSem }()
			t.serveInbound(pc)
		})
	}
}

// serveInbound authenticates one inbound connection and dispatches it by
// its first record. It returns once the connection is handed off or closed.
// The connection holds its admission slot (see admission.go) until its
// first record has arrived.
func (t *transport) serveInbound(pc *pendingConn) {
	conn := pc.TCPConn
	defer t.adm.release(pc)
	sess, err := t.o.acceptHandshake(pc)
	if err != nil {
		t.inboundFailed(pc, err)
		conn.Close()
		return
	}
	pc.stage.Store(stageRecord)
	sc := newSecureConn(conn, sess)
	kind := make([]byte, 1)
	if _, err := sc.Read(kind); err != nil {
		t.inboundFailed(pc, err)
		conn.Close()
		return
	}
	t.adm.release(pc)
	switch kind[0] {
	case connStream:
		_ = conn.SetDeadline(time.Time{})
		select {
		case t.streamCh <- sc:
		case <-t.shutdownCh:
			conn.Close()
		}
	case connLink:
		t.o.acceptLink(sc) // reads the hello under the handshake deadline
	default:
		t.o.log.Warn().Str("remote", conn.RemoteAddr().String()).Msg("unknown connection kind; closing")
		conn.Close()
	}
}

// inboundFailed counts and logs (rate-limited) an inbound connection that
// failed before its first record.
func (t *transport) inboundFailed(pc *pendingConn, err error) {
	reason, auth := t.adm.failReason(pc, err)
	if !auth {
		if t.shedLogLimiter.allow(time.Now()) {
			t.o.log.Debug().Str("remote", pc.RemoteAddr().String()).Err(err).
				Msg("dropped pending connection: " + reason)
		}
		return
	}
	t.refusedAuth.Add(1)
	if t.authLogLimiter.allow(time.Now()) {
		t.o.log.Warn().Str("remote", pc.RemoteAddr().String()).Err(err).
			Uint64("refused_total", t.refusedAuth.Load()).
			Msg("refused connection: " + reason)
	}
}

// rateLimiter allows one event per second; for log lines that an attacker
// could otherwise turn into a flood.
type rateLimiter struct{ last atomic.Int64 }

func (r *rateLimiter) allow(now time.Time) bool {
	prev := r.last.Load()
	if now.UnixNano()-prev < int64(time.Second) {
		return false
	}
	return r.last.CompareAndSwap(prev, now.UnixNano())
}
