// Command irisd is the Iris daemon: one per host, joining the other daemons
// of its network into an encrypted overlay.
//
//	irisd keygen -o FILE                      # once per network
//	irisd -net NAME -key FILE -join SEED,...  # on every host
//	irisd -dev                                # a standalone development node
//	irisd version                             # the build
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
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/internal/buildinfo"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the daemon failed to start or was killed by a second signal
	exitUsage = 2 // bad flags, missing or unreadable network name or key
)

// shutdownTimeout bounds the graceful leave after SIGINT or SIGTERM, on
// top of the drain (-drain-timeout).
const shutdownTimeout = 5 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is irisd without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdout io.Writer, stderr *os.File) int {
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "version" {
		return version(args[1:], stdout, stderr)
	}
	opts, err := parseArgs(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stderr)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "irisd: %s\nRun 'irisd -h' for usage.\n", tidy(err))
		return exitUsage
	}
	zerolog.ErrorMarshalFunc = func(err error) any { return oneLine(tidy(err)) }
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
	hupCh := make(chan os.Signal, 1)
	signal.Notify(hupCh, syscall.SIGHUP)
	if opts.dev {
		// A dev node started by `go run` (or a shell script) goes when its
		// parent goes, rather than holding its ports as an orphan.
		orphaned, err := exitWithParent(syscall.SIGTERM)
		if err != nil {
			log.Warn().Err(err).Msg("dev mode: cannot arrange to exit with the parent process")
		}
		if orphaned {
			sigCh <- syscall.SIGTERM
		}
	}
	d, err := daemon.New(opts.cfg)
	if err != nil {
		ev := log.Error().Err(err)
		if errors.Is(err, syscall.EADDRINUSE) {
			ev = ev.Str("hint", portHint(opts.dev))
		}
		ev.Msg("cannot start")
		return exitError
	}
	log.Info().Str("version", buildinfo.Read().Version).Str("revision", buildinfo.Read().ShortRevision()).Msg("irisd started")
	var sig os.Signal
	for sig == nil {
		select {
		case sig = <-sigCh:
		case <-hupCh:
			reloadKeys(d, opts, log)
		case <-d.Failed():
			log.Error().Err(d.Err()).Msg("irisd stopped")
			_ = d.Close()
			return exitError
		}
	}
	timeout := opts.cfg.DrainTimeout + shutdownTimeout
	log.Info().Stringer("signal", sig).Dur("timeout", timeout).
		Msg("shutting down gracefully; send the signal again to exit at once")
	go func() {
		sig := <-sigCh
		log.Warn().Stringer("signal", sig).Msg("second signal: exiting at once")
		os.Exit(exitError)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := d.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("graceful leave incomplete; peers will see this daemon fail")
	}
	return exitOK
}

// reloadKeys re-reads the -key file on SIGHUP and gives the daemon its
// keys: the step of a key rotation. On any error the daemon keeps the keys
// it has.
func reloadKeys(d *daemon.Daemon, opts *options, log zerolog.Logger) {
	if opts.keyFile == "" {
		log.Warn().Msg("SIGHUP: keys not reloaded: they came from " + envKey +
			" or -dev, which cannot change; run with -key FILE to rotate keys without a restart")
		return
	}
	keys, err := crypto.ReadKeysFile(opts.keyFile)
	if err == nil {
		err = d.SetKeys(keys[0], keys[1:])
	}
	if err != nil {
		log.Error().Err(err).Msg("SIGHUP: keys not reloaded; keeping the current ones")
		return
	}
	log.Info().Str("file", opts.keyFile).Int("keys", len(keys)).Msg("network keys reloaded")
}

// portHint explains an address in use.
func portHint(dev bool) string {
	if dev {
		return "another irisd -dev (or another program) holds this port; stop it, or give this node other ports: " +
			"irisd -dev -listen 127.0.0.1:PORT -relay PORT -status 127.0.0.1:PORT"
	}
	return "another program (another irisd?) holds this port; stop it, or change -listen, -relay or -status"
}

// multiHead is the head of a hashicorp/go-multierror message, which
// memberlist's join returns: "1 error occurred:\n\t* failed to join ...".
var multiHead = regexp.MustCompile(`\d+ errors? occurred:\n\t\* `)

// oneLine flattens an error message for a log line: a multierror's list
// becomes "a; b", and no newline or tab is left.
func oneLine(msg string) string {
	msg = multiHead.ReplaceAllString(msg, "")
	msg = strings.ReplaceAll(msg, "\n\t* ", "; ")
	return strings.Join(strings.Fields(msg), " ")
}

// version implements 'irisd version'.
func version(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "Usage: irisd version\n\nPrints the module version and VCS revision irisd was built from.")
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
			return exitOK
		}
		return exitUsage
	}
	fmt.Fprintf(stdout, "irisd %s\n", buildinfo.Read())
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
