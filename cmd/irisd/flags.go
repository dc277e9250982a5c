package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// Environment variables read when the matching flag is not given (and
// never with -dev). Every flag but -dev has one: IRIS_ and the flag's name
// in capitals with - as _ (see envName); these are the ones with a meaning
// of their own.
const (
	envNet     = "IRIS_NET"      // network name, as -net
	envKey     = "IRIS_KEY"      // the base64 network key itself (not a file); several, comma-separated, during a key rotation
	envKeyFile = "IRIS_KEY_FILE" // the key file, as -key
	envJoin    = "IRIS_JOIN"     // comma-separated seeds, as -join
)

// envName returns the environment variable that sets flag name when the
// command line does not: IRIS_ and the name in capitals, - as _ (-key reads
// IRIS_KEY_FILE, IRIS_KEY being the key itself). -dev has none: a dev node
// ignores the environment, so that a shell set up for a real network
// never starts one by mistake, nor a dev node joins a real network.
func envName(flagName string) string {
	switch flagName {
	case "key":
		return envKeyFile
	case "dev":
		return ""
	}
	return "IRIS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag of fs not given on the command line (set) from
// its environment variable, and records it in set.
func applyEnv(fs *flag.FlagSet, set map[string]bool, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if err != nil || set[f.Name] || name == "" {
			return
		}
		v := getenv(name)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %v", name, v, serr)
			return
		}
		set[f.Name] = true
	})
	return err
}

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
	// keyFile is the -key file, re-read on SIGHUP; "" when the keys came
	// from the environment or -dev.
	keyFile string
	// dev is set by -dev.
	dev bool
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
	drainTimeout, linkProbe             time.Duration
	pprof                               bool
	mem                                 memoryFlags // limits.go
}

const usageText = `Usage:
  irisd -net NAME -key FILE [-listen HOST:PORT] [-join HOST[:PORT],...] [flags]
  irisd -dev [flags]          standalone development node, no configuration needed
  irisd keygen -o FILE        write a new network key to FILE ("-" for stdout)

  irisd version               print the version and VCS revision

Environment (used when the flag is not given; ignored with -dev):
  IRIS_NET       network name (-net)
  IRIS_KEY       the network key itself, 44 characters of base64; during a key
                 rotation several, comma-separated, the one to dial with first
  IRIS_KEY_FILE  the key file (-key)
  IRIS_JOIN      comma-separated seeds (-join)
  and for every other flag, IRIS_ and its name in capitals with - as _:
  IRIS_LISTEN, IRIS_RELAY, IRIS_STATUS, IRIS_PPROF, IRIS_LOG_LEVEL, IRIS_MAX_MESSAGE...

Flags:
`

// newFlagSet returns irisd's flag set, writing into r.
func newFlagSet(r *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("irisd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&r.dev, "dev", false, "run a standalone development node: network \"dev\", a fresh ephemeral key, listen "+
		devListen+", status "+devStatus+"; other flags override these; it exits with the process that started it (Linux)")
	fs.StringVar(&r.network, "net", "", "network `NAME` (or $IRIS_NET); daemons join only daemons of the same name and key")
	fs.StringVar(&r.keyFile, "key", "", "network key `FILE` written by 'irisd keygen' (or $IRIS_KEY_FILE; or the key itself in $IRIS_KEY); during a key rotation one key per line, the one to dial with first, re-read on SIGHUP")
	fs.StringVar(&r.listen, "listen", "", "overlay `HOST:PORT`, TCP and UDP (default "+daemon.DefaultListen+")")
	fs.StringVar(&r.advertise, "advertise", "", "`HOST:PORT` other daemons reach this one at (default: the listen address, or the host's private IP)")
	fs.StringVar(&r.join, "join", "", "comma-separated seed daemons, `HOST[:PORT],...` (port default 55556; or $IRIS_JOIN)")
	fs.IntVar(&r.relay, "relay", daemon.DefaultRelayPort, "relay `PORT` for local apps, on loopback only (0 disables)")
	fs.StringVar(&r.status, "status", "", "serve GET /status and /metrics on `HOST:PORT` (default off; "+devStatus+" with -dev)")
	fs.BoolVar(&r.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on the -status address (or $IRIS_PPROF=1)")
	fs.StringVar(&r.zone, "zone", "", "locality `LABEL` (rack, zone) for locality-aware balancing")
	fs.StringVar(&r.node, "node", "", "node `ID`, unique in the network (default: host name plus a random suffix)")
	fs.StringVar(&r.gossip, "gossip", "lan", "failure-detection timers: `lan` (a silent daemon is declared dead after about 5-25 s) or local (about 2-5 s; loopback tests)")
	fs.StringVar(&r.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	fs.IntVar(&r.maxMessage, "max-message", 0, "largest app message in `BYTES` (a larger one closes that app's connection; default 16 MiB)")
	fs.IntVar(&r.appQueue, "app-queue", 0, "messages queued per app before its broadcasts and events are dropped (slow consumer; default 65536)")
	fs.IntVar(&r.maxApps, "max-apps", 0, "app connections open at once; more are refused (default 16384)")
	fs.IntVar(&r.memberCapacity, "member-capacity", 0, "requests a member may have in flight before balancing prefers others (default 128)")
	fs.DurationVar(&r.drainTimeout, "drain-timeout", daemon.DefaultDrainTimeout, "on SIGINT/SIGTERM, how long local apps may take to answer the requests they hold, with no new work sent here, before the daemon leaves (`DURATION`, 0 skips the drain; or $IRIS_DRAIN_TIMEOUT)")
	fs.DurationVar(&r.linkProbe, "link-probe-timeout", daemon.DefaultLinkProbeTimeout, "how long a data link's probe may go unanswered before the link is closed as silent and what it carries fails; the peer is avoided for new work after half of it (`DURATION`; raise it on hosts starved of CPU for longer)")
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
	if getenv(envKey) != "" && getenv(envKeyFile) != "" && !set["key"] {
		return nil, errors.New("both " + envKey + " and " + envKeyFile + " are set: set one")
	}
	if err := applyEnv(fs, set, getenv); err != nil {
		return nil, err
	}
	opts := &options{cfg: daemon.DefaultConfig(), dev: r.dev}
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
	c.Pprof = r.pprof // $IRIS_PPROF too, through applyEnv
	c.LinkProbeTimeout = r.linkProbe
	if c.Pprof && c.StatusAddr == "" {
		return errors.New("-pprof needs a status address: pass -status HOST:PORT")
	}
	c.Advertise, c.Zone, c.NodeID, c.RelayPort = r.advertise, r.zone, r.node, r.relay
	c.DrainTimeout = r.drainTimeout // $IRIS_DRAIN_TIMEOUT too, through applyEnv
	if c.DrainTimeout < 0 {
		return fmt.Errorf("drain timeout %v: must not be negative", c.DrainTimeout)
	}
	if r.relay < 0 || r.relay > 65535 {
		return fmt.Errorf("-relay %d: want a port in 1..65535, or 0 to disable", r.relay)
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

// loadKey sets the network keys from -key, else $IRIS_KEY, else (with -dev)
// a fresh random key. The file holds one key per line, IRIS_KEY a
// comma-separated list; the first key dials, the others (at most 3) are
// accepted too, for a key rotation.
func (r *rawFlags) loadKey(opts *options, given bool, getenv func(string) string) error {
	var err error
	switch {
	case given:
		keys, err := crypto.ReadKeysFile(r.keyFile)
		if err != nil {
			return fmt.Errorf("-key %s: %s", r.keyFile, tidy(err))
		}
		opts.cfg.Key, opts.cfg.SecondaryKeys = keys[0], keys[1:]
		opts.keyFile = r.keyFile
	case getenv(envKey) != "":
		keys, err := crypto.ParseKeys(getenv(envKey))
		if err != nil {
			return keyTextError(getenv(envKey), err)
		}
		opts.cfg.Key, opts.cfg.SecondaryKeys = keys[0], keys[1:]
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

// keyTextError explains a bad $IRIS_KEY; a value that names a file (a
// common slip) gets a hint that the variable takes the key itself.
func keyTextError(val string, err error) error {
	if fi, serr := os.Stat(val); serr == nil && fi.Mode().IsRegular() || looksLikePath(val) {
		return fmt.Errorf("%s=%q looks like a file name, but %s takes the key itself (44 characters of base64); "+
			"for a file, pass -key %s or set %s=%s", envKey, val, envKey, val, envKeyFile, val)
	}
	return fmt.Errorf("%s: %s (it takes the key itself, as 'irisd keygen -o -' prints it)", envKey, tidy(err))
}

// looksLikePath reports whether a key list (comma-separated keys of 44
// characters of base64) is rather a file name: an entry of another length
// with a slash or a dot in it.
func looksLikePath(val string) bool {
	for entry := range strings.SplitSeq(val, ",") {
		if entry = strings.TrimSpace(entry); len(entry) != 44 && strings.ContainsAny(entry, "/.") {
			return true
		}
	}
	return false
}

// pkgPrefixes are the prefixes of the project's errors ("crypto: ...").
var pkgPrefixes = []string{"api", "cluster", "crypto", "daemon", "overlay", "relay"}

// tidy returns err's message without the package prefixes ("crypto: ")
// that repeat along its chain: "read key file k: bad key: empty".
func tidy(err error) string {
	parts := strings.Split(err.Error(), ": ")
	out := parts[:0]
	for _, p := range parts {
		if slices.Contains(pkgPrefixes, p) {
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return err.Error()
	}
	return strings.Join(out, ": ")
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
