package overlay

import (
	"net"
	"sync"

	"github.com/iris-mesh/iris/crypto"
)

// secureConn is a net.Conn over a Noise session: each Write becomes one or
// more records, Read returns decrypted record bytes. Memberlist streams and
// the first records of a data link use it; an established link's hot path
// seals and opens records itself to batch them.
type secureConn struct {
	net.Conn
	sess *crypto.Session

	rmu   sync.Mutex // protects following
	rbuf  []byte
	plain []byte // decrypted bytes not yet returned by Read

	wmu  sync.Mutex // protects following
	wbuf []byte
}

func newSecureConn(c net.Conn, s *crypto.Session) *secureConn {
	return &secureConn{Conn: c, sess: s}
}

// Read implements net.Conn.
func (c *secureConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.plain) == 0 {
		if c.rbuf == nil {
			c.rbuf = make([]byte, crypto.RecordHeaderSize+65535)
		}
		rec, err := crypto.ReadRecord(c.Conn, c.rbuf)
		if err != nil {
			return 0, err
		}
		c.plain, err = c.sess.Open(rec[:0], rec)
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// Write implements net.Conn.
func (c *secureConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), crypto.MaxRecordPlaintext)]
		var err error
		c.wbuf, err = c.sess.Seal(c.wbuf[:0], chunk)
		if err != nil {
			return written, err
		}
		if _, err := c.Conn.Write(c.wbuf); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// buffered reports how many decrypted bytes wait to be read.
func (c *secureConn) buffered() int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return len(c.plain)
}
