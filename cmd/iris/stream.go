package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// Byte streams over tunnels. A tunnel carries whole messages and closes
// both ways at once, while a TCP connection can be half-closed: a client
// sends its request, shuts down its sending side and still reads the
// answer. iris tunnel, forward and expose therefore carry bytes as
// non-empty messages and mark the end of one direction (a half-close) with
// an empty message; a tunnel closed before both ends sent theirs was
// aborted. iris serve echoes the empty message like any other, so a tunnel
// to it ends cleanly.

// errAborted is the error of a stream whose tunnel closed before the far
// end marked its end: the far end failed, or its TCP peer reset.
var errAborted = errors.New("the far end closed the tunnel before the end of its stream")

// sendStream copies r to t in messages of at most the tunnel's chunk limit,
// then sends the empty message that ends the stream.
func sendStream(ctx context.Context, t *sdk.Tunnel, r io.Reader, sent *int64) error {
	buf := make([]byte, t.ChunkLimit())
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if err := t.Send(ctx, buf[:n]); err != nil {
				return err
			}
			*sent += int64(n)
		}
		if err == io.EOF {
			return t.Send(ctx, nil)
		}
		if err != nil {
			return err
		}
	}
}

// recvStream copies t's messages to w until the empty message that ends
// the far end's stream (fin) or the tunnel's close (!fin).
func recvStream(ctx context.Context, t *sdk.Tunnel, w io.Writer, got *int64) (fin bool, err error) {
	for {
		msg, err := t.Recv(ctx)
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if len(msg) == 0 {
			return true, nil
		}
		if _, err := w.Write(msg); err != nil {
			return false, err
		}
		*got += int64(len(msg))
	}
}

// spliceResult is what one spliced connection carried.
type spliceResult struct {
	sent, received int64 // bytes from the TCP side into the tunnel, and back
	err            error // the first failure; nil when both ends finished cleanly
}

// splice carries conn's bytes over t both ways until both directions have
// ended, honouring half-closes, then closes both. A failure on either side
// aborts the other: the tunnel is closed without its end mark, the TCP
// connection is reset.
func splice(ctx context.Context, conn *net.TCPConn, t *sdk.Tunnel) spliceResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		res   spliceResult
		once  sync.Once
		wg    sync.WaitGroup
		fail  = func(err error) { once.Do(func() { res.err = err; cancel(); _ = conn.SetLinger(0); _ = conn.Close() }) }
		alive = func() bool { return ctx.Err() == nil }
	)
	wg.Add(2)
	go func() { // TCP → tunnel
		defer wg.Done()
		if err := sendStream(ctx, t, conn, &res.sent); err != nil && alive() {
			fail(err)
		}
	}()
	go func() { // tunnel → TCP
		defer wg.Done()
		fin, err := recvStream(ctx, t, conn, &res.received)
		switch {
		case err != nil:
			if alive() {
				fail(err)
			}
		case !fin:
			fail(errAborted)
		default:
			if err := conn.CloseWrite(); err != nil && alive() {
				fail(err)
			}
		}
	}()
	wg.Wait()
	// Both directions ended: the tunnel carries nothing more. After a
	// failure the close (without an end mark) tells the far end to abort.
	_ = t.Close()
	_ = conn.Close()
	return res
}

// pipeTunnel sends in over t and copies what comes back to out, until the
// far end ends its stream or closes the tunnel, or, once in is exhausted,
// nothing arrived for linger (a far end that never marks its end).
func pipeTunnel(ctx context.Context, t *sdk.Tunnel, in io.Reader, out io.Writer, linger time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upDone := make(chan error, 1)
	go func() {
		var n int64
		upDone <- sendStream(ctx, t, in, &n)
	}()
	progress := make(chan struct{}, 1)
	downDone := make(chan error, 1)
	go func() {
		var n int64
		_, err := recvStream(ctx, t, &notifyWriter{w: out, ch: progress}, &n)
		downDone <- err
	}()
	select {
	case err := <-downDone:
		// The far end finished first. The goroutine reading in may be
		// blocked on a terminal and is left to the process's exit.
		return err
	case err := <-upDone:
		if err != nil {
			cancel()
			<-downDone
			return err
		}
	case <-ctx.Done():
		<-downDone
		return nil
	}
	timer := time.NewTimer(linger)
	defer timer.Stop()
	for {
		select {
		case <-progress:
			timer.Reset(linger)
		case err := <-downDone:
			if errors.Is(err, context.Canceled) {
				return nil // interrupted
			}
			return err
		case <-timer.C:
			cancel()
			<-downDone
			return nil
		}
	}
}

// notifyWriter signals ch after every write.
type notifyWriter struct {
	w  io.Writer
	ch chan struct{}
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	select {
	case n.ch <- struct{}{}:
	default:
	}
	return n.w.Write(p)
}
