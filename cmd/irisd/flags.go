package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// Environment variables read when the matching flag is not given (and
// never with -dev).
const (
	envNet  = "IRIS_NET"  // network name, as -net
	envKey  = "IRIS_KEY"  // the base64 network key itself (not a file), as -key
	envJoin = "IRIS_JOIN" // comma-separated seeds, as -join
)

// Defaults of -dev; flags given explicitly still win.
const (
	devNetwork = "dev"
	devListen  = "127.0.0.1:55556"
	devStatus  = "127.0.0.1:55580"
)

// options is what irisd's command line asks for.
type options struct {
	cfg      *daemon.Config
	logLevel zerolog.Level
	// ephemeralKey is set when -dev generated a random key.
	ephemeralKey bool
}

// rawFlags holds the flag values before they are checked.
type rawFlags struct {
	dev                                 bool
	network, keyFile, listen, advertise string
	join, status, zone, node, gossip    string
	logLevel                            string
	relay                               int
	maxMessage, appQueue, maxApps       int
	memberCapacity                      int
	mem                                 memoryFlags // limits.go
}

const usageText = `Usage:
  irisd -net NAME -key FILE [-listen HOST:PORT] [-join HOST[:PORT],...] [flags]
  irisd -dev [flags]          standalone development node, no configuration needed
  irisd keygen -o FILE        write a new network key to FILE ("-" for stdout)

Environment (used when the flag is not given; ignored with -dev):
  IRIS_NET   network name (-net)
  IRIS_KEY   the network key itself, base64 (-key takes a file instead)
  IRIS_JOIN  comma-separated seeds (-join)
  IRIS_APP_MEMORY, IRIS_MESSAGE_TIMEOUT, IRIS_MAX_REPLY_BYTES, IRIS_MAX_APP_INTEREST,
  IRIS_MAX_INTEREST, IRIS_MAX_PENDING   the limits of the same flags

Flags:
`

// newFlagSet returns irisd's flag set, writing into r.
func newFlagSet(r *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("irisd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&r.dev, "dev", false, "run a standalone `dev` node: network \"dev\", a fresh ephemeral key, listen "+
		devListen+", status "+devStatus+"; other flags override these")
	fs.StringVar(&r.network, "net", "", "network `NAME` (or $IRIS_NET); daemons join only daemons of the same name and key")
	fs.StringVar(&r.keyFile, "key", "", "network key `FILE` written by 'irisd keygen' (or the key itself in $IRIS_KEY)")
	fs.StringVar(&r.listen, "listen", "", "overlay `HOST:PORT`, TCP and UDP (default "+daemon.DefaultListen+")")
	fs.StringVar(&r.advertise, "advertise", "", "`HOST:PORT` other daemons reach this one at (default: the listen address, or the host's private IP)")
	fs.StringVar(&r.join, "join", "", "comma-separated seed daemons, `HOST[:PORT],...` (port default 55556; or $IRIS_JOIN)")
	fs.IntVar(&r.relay, "relay", daemon.DefaultRelayPort, "relay `PORT` for local apps, on loopback only (0 disables)")
	fs.StringVar(&r.status, "status", "", "serve GET /status and /metrics on `HOST:PORT` (default off; "+devStatus+" with -dev)")
	fs.StringVar(&r.zone, "zone", "", "locality `LABEL` (rack, zone) for locality-aware balancing")
	fs.StringVar(&r.node, "node", "", "node `ID`, unique in the network (default: host name plus a random suffix)")
	fs.StringVar(&r.gossip, "gossip", "lan", "failure-detection timers: `lan` (a silent daemon is declared dead after about 5-25 s) or local (about 1-4 s; loopback tests)")
	fs.StringVar(&r.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.IntVar(&r.maxMessage, "max-message", 0, "largest app message in `BYTES` (a larger one closes that app's connection; default 16 MiB)")
	fs.IntVar(&r.appQueue, "app-queue", 0, "messages queued per app before its broadcasts and events are dropped (slow consumer; default 4096)")
	fs.IntVar(&r.maxApps, "max-apps", 0, "app connections open at once; more are refused (default 16384)")
	fs.IntVar(&r.memberCapacity, "member-capacity", 0, "requests a member may have in flight before balancing prefers others (default 128)")
	r.mem.add(fs)
	return fs
}

// usage writes irisd's usage text to w.
func usage(w io.Writer) {
	fs := newFlagSet(&rawFlags{})
	fs.SetOutput(w)
	fmt.Fprint(w, usageText)
	fs.PrintDefaults()
}

// parseArgs turns irisd's arguments (without the program name) and its
// environment into options. Every error is the operator's to fix; it
// returns flag.ErrHelp for -h.
func parseArgs(args []string, getenv func(string) string) (*options, error) {
	var r rawFlags
	fs := newFlagSet(&r)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if r.dev {
		getenv = func(string) string { return "" }
	}
	opts := &options{cfg: daemon.DefaultConfig()}
	if err := r.apply(opts, set, getenv); err != nil {
		return nil, err
	}
	if err := opts.cfg.Validate(); err != nil {
		return nil, err
	}
	return opts, nil
}

// apply fills opts from r, the flags given (set) and the environment.
func (r *rawFlags) apply(opts *options, set map[string]bool, getenv func(string) string) error {
	c := opts.cfg
	lvl, err := parseLevel(r.logLevel)
	if err != nil {
		return err
	}
	opts.logLevel = lvl
	if c.Gossip, err = parseGossip(r.gossip); err != nil {
		return err
	}
	c.Network = pick(set["net"], r.network, getenv(envNet), r.dev, devNetwork)
	if c.Network == "" {
		return errors.New("no network name: pass -net NAME or set " + envNet + " (or run a dev node with -dev)")
	}
	if err := r.loadKey(opts, set["key"], getenv); err != nil {
		return err
	}
	c.Listen = pick(set["listen"], r.listen, "", r.dev, devListen)
	if !set["listen"] && !r.dev {
		c.Listen = daemon.DefaultListen
	}
	c.StatusAddr = pick(set["status"], r.status, "", r.dev, devStatus)
	c.Join = splitList(pick(set["join"], r.join, getenv(envJoin), false, ""))
	c.Advertise, c.Zone, c.NodeID, c.RelayPort = r.advertise, r.zone, r.node, r.relay
	if r.relay < 0 || r.relay > 65535 {
		return fmt.Errorf("-relay %d: want a port in 1..65535, or 0 to disable", r.relay)
	}
	if err := r.mem.fromEnv(set, getenv); err != nil {
		return err
	}
	return r.applyLimits(c)
}

// applyLimits sets the limits given as flags; 0 keeps each default.
func (r *rawFlags) applyLimits(c *daemon.Config) error {
	for name, v := range map[string]int{"-max-message": r.maxMessage, "-app-queue": r.appQueue,
		"-max-apps": r.maxApps, "-member-capacity": r.memberCapacity} {
		if v < 0 {
			return fmt.Errorf("%s %d: want a positive number", name, v)
		}
	}
	rc := relay.DefaultConfig()
	if r.maxMessage > 0 {
		if r.maxMessage > 1<<30 {
			return fmt.Errorf("-max-message %d: at most 1 GiB", r.maxMessage)
		}
		rc.Limits.MaxMessageLen = r.maxMessage
	}
	if r.appQueue > 0 {
		rc.SendQueueLen = r.appQueue
	}
	if r.maxApps > 0 {
		rc.MaxConns = r.maxApps
	}
	c.Relay = rc
	cc := cluster.DefaultConfig()
	if r.memberCapacity > 0 {
		cc.MemberCapacity = r.memberCapacity
	}
	c.Cluster = cc
	return r.mem.apply(c)
}

// loadKey sets the network key from -key, else $IRIS_KEY, else (with -dev)
// a fresh random key.
func (r *rawFlags) loadKey(opts *options, given bool, getenv func(string) string) error {
	var err error
	switch {
	case given:
		opts.cfg.Key, err = crypto.ReadKeyFile(r.keyFile)
		if err != nil {
			return fmt.Errorf("-key: %w", err)
		}
	case getenv(envKey) != "":
		opts.cfg.Key, err = crypto.ParseKey(getenv(envKey))
		if err != nil {
			return fmt.Errorf("%s: %w", envKey, err)
		}
	case r.dev:
		opts.cfg.Key, err = crypto.GenerateKey()
		opts.ephemeralKey = true
		return err
	default:
		return errors.New("no network key: pass -key FILE or set " + envKey +
			" (create a key with: irisd keygen -o FILE)")
	}
	return nil
}

// pick returns the flag value if the flag was given (even empty), else the
// environment value, else the dev default when dev is set.
func pick(given bool, flagVal, envVal string, dev bool, devVal string) string {
	switch {
	case given:
		return flagVal
	case envVal != "":
		return envVal
	case dev:
		return devVal
	}
	return ""
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
}

func parseGossip(s string) (overlay.GossipConfig, error) {
	switch s {
	case "lan":
		return overlay.LANGossip(), nil
	case "local":
		return overlay.LocalGossip(), nil
	}
	return overlay.GossipConfig{}, fmt.Errorf("-gossip %q: want lan or local", s)
}
