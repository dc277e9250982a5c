// Command benchratio summarizes the output of the side-by-side benchmarks:
// for each benchmark, the median ns/op and allocs/op of each system (the
// sys=NAME element of the benchmark's name), and how one system's ns/op
// compares with the others', as a Markdown table (and, for a benchmark on
// several nodes, with the first -to system's run on one node: two Iris
// daemons against one NATS server); then the medians of the
// streaming benchmarks' own metrics (lost%, cpu-ns/msg) when present.
//
// Usage:
//
//	benchratio [-of iris] [-to nats,tcp,tcpgcm] results/latest.txt
//
// A ratio above 1 means the -of system took longer per operation. When
// every system has as many samples (run.sh's rounds, each running every
// benchmark once), the ratio is the median of the per-round ratios, with
// their range in brackets; otherwise it is the ratio of the medians. Only
// ratios within one file are meaningful: they come from one run on one
// machine, where the systems shared the same noise.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// procsSuffix is the -GOMAXPROCS suffix go test adds to benchmark names.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// multiNode matches the nodes= element of a benchmark run on several nodes.
var multiNode = regexp.MustCompile(`nodes=([2-9]|\d\d+)`)

// samples holds the measurements of one benchmark, by system and unit.
type samples map[string]map[string][]float64

func main() {
	of := flag.String("of", "iris", "the system whose ratios are shown")
	to := flag.String("to", "nats,tcp,tcpgcm", "comma-separated systems to divide by")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: benchratio [-of sys] [-to sys,...] [file]")
		flag.PrintDefaults()
	}
	flag.Parse()
	in := io.Reader(os.Stdin)
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	names, systems, data, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	printTable(os.Stdout, names, systems, data, *of, strings.Split(*to, ","))
}

// parse reads benchmark lines, grouping them by name without the sys=
// element, in the order they first appear.
func parse(r io.Reader) (names, systems []string, data map[string]samples, err error) {
	data = map[string]samples{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name, sys := splitSys(procsSuffix.ReplaceAllString(f[0], ""))
		if sys == "" {
			continue
		}
		if _, ok := data[name]; !ok {
			names = append(names, name)
			data[name] = samples{}
		}
		if !slices.Contains(systems, sys) {
			systems = append(systems, sys)
		}
		if data[name][sys] == nil {
			data[name][sys] = map[string][]float64{}
		}
		// f[1] is the iteration count; then value-unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			data[name][sys][f[i+1]] = append(data[name][sys][f[i+1]], v)
		}
	}
	return names, systems, data, sc.Err()
}

// splitSys removes the sys=NAME element from a benchmark name and returns
// the rest and NAME ("" when there is none).
func splitSys(name string) (rest, sys string) {
	parts := strings.Split(name, "/")
	kept := parts[:0]
	for _, p := range parts {
		if s, ok := strings.CutPrefix(p, "sys="); ok {
			sys = s
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "/"), sys
}

// median returns the median of vs, or 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printTable writes the Markdown table.
func printTable(w io.Writer, names, systems []string, data map[string]samples, of string, to []string) {
	fmt.Fprint(w, "| benchmark |")
	for _, s := range systems {
		fmt.Fprintf(w, " %s ns/op |", s)
	}
	for _, t := range to {
		fmt.Fprintf(w, " %s/%s |", of, t)
	}
	fmt.Fprintf(w, " %s/%s one node |", of, to[0])
	for _, s := range systems {
		fmt.Fprintf(w, " %s allocs/op |", s)
	}
	// Custom metrics of the streaming benchmarks, when any has them.
	var extra []string
	for _, unit := range []string{"lost%", "cpu-ns/msg"} {
		for _, d := range data {
			if hasUnit(d, unit) && !slices.Contains(extra, unit) {
				extra = append(extra, unit)
			}
		}
	}
	for _, unit := range extra {
		for _, s := range systems {
			fmt.Fprintf(w, " %s %s |", s, unit)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|")
	fmt.Fprint(w, strings.Repeat("--:|", (2+len(extra))*len(systems)+len(to)+1))
	fmt.Fprintln(w)
	for _, n := range names {
		d := data[n]
		fmt.Fprintf(w, "| %s |", strings.TrimPrefix(n, "Benchmark"))
		for _, s := range systems {
			fmt.Fprintf(w, " %s |", format(d[s]["ns/op"]))
		}
		for _, t := range to {
			fmt.Fprintf(w, " %s |", ratio(d[of]["ns/op"], d[t]["ns/op"]))
		}
		// Several nodes of ours against one of theirs (one NATS server).
		one := "-"
		if single, ok := data[multiNode.ReplaceAllString(n, "nodes=1")]; ok && multiNode.MatchString(n) {
			one = ratio(d[of]["ns/op"], single[to[0]]["ns/op"])
		}
		fmt.Fprintf(w, " %s |", one)
		for _, s := range systems {
			fmt.Fprintf(w, " %s |", formatAllocs(d[s]["allocs/op"]))
		}
		for _, unit := range extra {
			for _, s := range systems {
				fmt.Fprintf(w, " %s |", format(d[s][unit]))
			}
		}
		fmt.Fprintln(w)
	}
}

// hasUnit reports whether any system of one benchmark measured unit.
func hasUnit(d samples, unit string) bool {
	for _, units := range d {
		if len(units[unit]) > 0 {
			return true
		}
	}
	return false
}

// format prints the median of vs with a precision that suits its size.
func format(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	m := median(vs)
	switch {
	case m >= 100:
		return strconv.FormatFloat(m, 'f', 0, 64)
	case m >= 10:
		return strconv.FormatFloat(m, 'f', 1, 64)
	}
	return strconv.FormatFloat(m, 'f', 2, 64)
}

// formatAllocs prints the median of vs to one decimal at most.
func formatAllocs(vs []float64) string {
	if len(vs) == 0 {
		return "-"
	}
	return strconv.FormatFloat(math.Round(median(vs)*10)/10, 'f', -1, 64)
}

// ratio compares two systems' samples of one benchmark. When both have as
// many samples, the i-th of each come from the same round, taken seconds
// apart: it returns the median of the per-round ratios a[i]/b[i] and their
// range, which a slow spell of the machine disturbs less than a ratio of
// medians would. Otherwise it returns the ratio of the medians.
func ratio(a, b []float64) string {
	switch {
	case len(a) == 0 || len(b) == 0:
		return "-"
	case len(a) != len(b) || len(a) == 1:
		return strconv.FormatFloat(median(a)/median(b), 'f', 2, 64)
	}
	rs := make([]float64, len(a))
	for i := range a {
		rs[i] = a[i] / b[i]
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", median(rs), slices.Min(rs), slices.Max(rs))
}
