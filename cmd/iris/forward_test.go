package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// downloadSize is the size of each download in TestForwardExposeHTTP: the
// issue's 50 MiB (about 4 s and 450 MB of memory under -race on a busy
// 2-core machine, 0.3 s without), 8 MiB with -short.
func downloadSize() int {
	if testing.Short() {
		return 8 << 20
	}
	return 50 << 20
}

// payload returns n deterministic pseudo-random bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'i', 'r', 'i', 's'})
	r.Read(b)
	return b
}

var listeningRe = regexp.MustCompile(`listening on (\S+),`)

// startForwardExpose runs iris expose CLUSTER target on b and iris forward
// on a, and returns the forward's address once a sees b's member.
func startForwardExpose(t *testing.T, target string, extra ...string) string {
	t.Helper()
	a, b := startPair(t)
	background(t, b, append([]string{"expose", "web", target}, extra...)...)
	waitFor(t, "the expose member, seen from a", func() bool { return members(a, "web", true) == 1 })
	_, fwdErr := background(t, a, append([]string{"forward", "127.0.0.1:0", "web"}, extra...)...)
	var addr string
	waitFor(t, "forward to listen", func() bool {
		m := listeningRe.FindStringSubmatch(fwdErr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

// TestForwardExposeHTTP: iris forward on one daemon and iris expose on
// another carry two HTTP downloads at once, intact.
func TestForwardExposeHTTP(t *testing.T) {
	leakcheck.Check(t)
	size := downloadSize()
	data := payload(size)
	want := sha256.Sum256(data)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	fwd := startForwardExpose(t, ln.Addr().String())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()

	const downloads = 2
	type result struct {
		n   int64
		sum [32]byte
		err error
	}
	results := make(chan result, downloads)
	start := time.Now()
	for i := range downloads {
		go func() {
			resp, err := client.Get(fmt.Sprintf("http://%s/file%d", fwd, i))
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			var r result
			r.n, r.err = n, err
			copy(r.sum[:], h.Sum(nil))
			results <- r
		}()
	}
	for range downloads {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != int64(size) || r.sum != want {
			t.Fatalf("downloaded %d bytes with sha256 %x, want %d bytes with %x", r.n, r.sum, size, want)
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d parallel downloads of %d MiB each, intact (sha256 %x...), in %v: %.1f MiB/s in all",
		downloads, size>>20, want[:4], elapsed.Round(time.Millisecond), float64(downloads*size)/(1<<20)/elapsed.Seconds())
}

// TestForwardExposeHalfClose: a client that shuts down its sending side
// still gets the server's answer, sent only after the server saw EOF; and
// the server's half-close reaches the client while it still sends.
func TestForwardExposeHalfClose(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Read to EOF, then answer with the length read.
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "read %d bytes", n)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-served })
	fwd := startForwardExpose(t, ln.Addr().String())

	for i := range 8 { // in parallel
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", fwd)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			msg := payload(100000 * (i + 1))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("read %d bytes", len(msg)); string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

// TestForwardUnreachableTarget: when expose cannot dial its target, the
// forward's client sees its connection end (reset or EOF), at once.
func TestForwardUnreachableTarget(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	fwd := startForwardExpose(t, dead)
	c, err := net.Dial("tcp", fwd)
	if err != nil {
		return // reset so fast that the dial saw it: ended too
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := c.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("read %d bytes, %v; want the connection to end", n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection stayed open")
	}
}
