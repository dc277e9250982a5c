// Command irisd is the Iris daemon: one per host, joining the other daemons
// of its network into an encrypted overlay.
//
//	irisd keygen -o FILE                      # once per network
//	irisd -net NAME -key FILE -join SEED,...  # on every host
//	irisd -dev                                # a standalone development node
//
// Run irisd -h for every flag, and see docs/operations.md. The daemon itself
// lives in package daemon; this command only reads flags and environment,
// sets up logging and handles signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the daemon failed to start or was killed by a second signal
	exitUsage = 2 // bad flags, missing or unreadable network name or key
)

// shutdownTimeout bounds the graceful leave after SIGINT or SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is irisd without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdout io.Writer, stderr *os.File) int {
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stdout, stderr)
	}
	opts, err := parseArgs(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stderr)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "irisd: %v\nRun 'irisd -h' for usage.\n", err)
		return exitUsage
	}
	log := newLogger(stderr, opts.logLevel)
	opts.cfg.Logger = log
	if limit := setSoftMemoryLimit(opts.cfg, getenv); limit > 0 {
		log.Debug().Int64("bytes", limit).Msg("soft memory limit set (GOMEMLIMIT overrides)")
	}
	if opts.ephemeralKey {
		log.Info().Msg("dev mode: generated an ephemeral network key; only this process knows it")
	}
	// Subscribe before starting, so no signal falls between the two.
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
	d, err := daemon.New(opts.cfg)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return exitError
	}
	var sig os.Signal
	select {
	case sig = <-sigCh:
	case <-d.Failed():
		log.Error().Err(d.Err()).Msg("irisd stopped")
		_ = d.Close()
		return exitError
	}
	log.Info().Stringer("signal", sig).Dur("timeout", shutdownTimeout).
		Msg("shutting down gracefully; send the signal again to exit at once")
	go func() {
		sig := <-sigCh
		log.Warn().Stringer("signal", sig).Msg("second signal: exiting at once")
		os.Exit(exitError)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("graceful leave incomplete; peers will see this daemon fail")
	}
	return exitOK
}

// newLogger logs to w: human-readable when w is a terminal, JSON lines
// otherwise.
func newLogger(w *os.File, level zerolog.Level) zerolog.Logger {
	var out io.Writer = w
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// keygen implements 'irisd keygen -o FILE'.
func keygen(args []string, stdout io.Writer, stderr io.Writer) int {
	fs := flag.NewFlagSet("irisd keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the key to `FILE` (mode 0600, never overwritten); \"-\" writes it to stdout")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: irisd keygen -o FILE\n\nWrites a new random network key. Every daemon of a network needs the same key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	k, err := crypto.GenerateKey()
	if err != nil {
		fmt.Fprintf(stderr, "irisd keygen: %v\n", err)
		return exitError
	}
	if *out == "-" {
		fmt.Fprintln(stdout, k.Text())
		return exitOK
	}
	if err := crypto.WriteKeyFile(*out, k); err != nil {
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%s already exists; refusing to overwrite a network key", *out)
		}
		fmt.Fprintf(stderr, "irisd keygen: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stderr, "irisd keygen: wrote a new network key to %s\n", *out)
	return exitOK
}
