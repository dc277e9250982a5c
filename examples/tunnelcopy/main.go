// Command tunnelcopy copies a file to a service over an Iris tunnel.
//
// Run the service, which stores every file it receives in a directory,
// until interrupted:
//
//	go run ./examples/tunnelcopy -serve -dir /tmp/received
//
// and, on any host of the same Iris network (each app talks to its local
// irisd), send it a file:
//
//	go run ./examples/tunnelcopy -file ./big.iso
//
// Over the tunnel, the client sends one message with the file's size and
// name, then the file's bytes as a stream through Tunnel.NetConn (io.Copy),
// and waits for the service's answer: "ok" once the file is stored, or an
// error text. Then it closes the tunnel. Tunnel credit throttles the copy
// to the pace at which the service writes the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

const cluster = "tunnelcopy"

func main() {
	serve := flag.Bool("serve", false, "register in cluster \"tunnelcopy\" and store received files until interrupted")
	dir := flag.String("dir", ".", "directory to store received files in (service mode)")
	file := flag.String("file", "", "file to send (client mode)")
	addr := flag.String("addr", sdk.DefaultAddr, "address of the local irisd")
	idle := flag.Duration("idle", 30*time.Second, "give up when the transfer stalls for this long")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = *addr

	var err error
	switch {
	case *serve:
		err = runService(ctx, cfg, *dir, *idle)
	case *file != "":
		err = runClient(ctx, cfg, *file, *idle)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// runService serves cluster "tunnelcopy" until ctx ends or the daemon goes
// away.
func runService(ctx context.Context, cfg *sdk.Config, dir string, idle time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	svc, err := sdk.Register(ctx, cfg, cluster, &receiver{dir: dir, idle: idle}, nil)
	if err != nil {
		return err
	}
	log.Printf("storing files sent to cluster %q in %s; interrupt to stop", cluster, dir)
	select {
	case <-ctx.Done():
	case <-svc.Done():
		log.Printf("connection lost: %v", svc.Err())
	}
	return svc.Close() // ends the tunnels still open, waits for their handlers
}

// receiver stores the files sent over the tunnels built to it.
type receiver struct {
	dir  string
	idle time.Duration
}

// HandleRequest refuses requests: files come over tunnels.
func (r *receiver) HandleRequest(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("send files over a tunnel")
}

// HandleTunnel receives one file and answers "ok" or the error. The SDK
// closes the tunnel when it returns.
func (r *receiver) HandleTunnel(t *sdk.Tunnel) {
	name, n, err := r.receive(t)
	ctx, cancel := context.WithTimeout(context.Background(), r.idle)
	defer cancel()
	answer := "ok"
	if err != nil {
		answer = err.Error()
		log.Printf("%s: %v", t.NetConn().RemoteAddr(), err)
	} else {
		log.Printf("stored %s (%d bytes)", name, n)
	}
	if err := t.Send(ctx, []byte(answer)); err != nil {
		return
	}
	// Wait for the client to read the answer and close the tunnel.
	_, _ = t.Recv(ctx)
}

// receive reads the header and the file and stores it in r.dir.
func (r *receiver) receive(t *sdk.Tunnel) (string, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.idle)
	defer cancel()
	header, err := t.Recv(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("read header: %w", err)
	}
	sizeText, name, _ := strings.Cut(string(header), " ")
	size, err := strconv.ParseInt(sizeText, 10, 64)
	name = filepath.Base(name)
	if err != nil || size < 0 || name == "." || name == ".." || name == string(filepath.Separator) {
		return "", 0, fmt.Errorf("bad header %q", header)
	}
	tmp, err := os.CreateTemp(r.dir, name+".part*")
	if err != nil {
		return "", 0, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	n, err := io.CopyN(tmp, idleReader{t.NetConn(), r.idle}, size)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(r.dir, name))
	}
	if err != nil {
		return "", n, fmt.Errorf("receive %s: %w", name, err)
	}
	return name, n, nil
}

// idleReader reads from a net.Conn, failing when no byte arrives for idle.
type idleReader struct {
	nc   net.Conn
	idle time.Duration
}

func (r idleReader) Read(p []byte) (int, error) {
	_ = r.nc.SetReadDeadline(time.Now().Add(r.idle))
	return r.nc.Read(p)
}

// idleWriter writes to a net.Conn, failing when the far end takes nothing
// for idle.
type idleWriter struct {
	nc   net.Conn
	idle time.Duration
}

func (w idleWriter) Write(p []byte) (int, error) {
	_ = w.nc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.nc.Write(p)
}

// runClient sends path to a member of cluster "tunnelcopy".
func runClient(ctx context.Context, cfg *sdk.Config, path string, idle time.Duration) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()

	buildCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	t, err := conn.Tunnel(buildCtx, cluster)
	cancel()
	if errors.Is(err, sdk.ErrTimeout) {
		return fmt.Errorf("no service accepted the tunnel (is one running with -serve?): %w", err)
	} else if err != nil {
		return err
	}
	defer t.Close()

	start := time.Now()
	header := fmt.Appendf(nil, "%d %s", st.Size(), filepath.Base(path))
	if err := t.Send(ctx, header); err != nil {
		return err
	}
	n, err := io.Copy(idleWriter{t.NetConn(), idle}, f)
	if err != nil {
		return fmt.Errorf("sent %d bytes: %w", n, err)
	}
	answerCtx, cancel := context.WithTimeout(ctx, idle)
	defer cancel()
	answer, err := t.Recv(answerCtx)
	if err != nil {
		return fmt.Errorf("sent %d bytes, no answer: %w", n, err)
	}
	if string(answer) != "ok" {
		return fmt.Errorf("service failed: %s", answer)
	}
	elapsed := time.Since(start)
	fmt.Printf("sent %s: %d bytes in %v (%.1f MiB/s)\n", path, n, elapsed.Round(time.Millisecond),
		float64(n)/(1<<20)/elapsed.Seconds())
	return t.Close()
}
