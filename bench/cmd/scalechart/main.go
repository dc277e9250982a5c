// Command scalechart draws the scale harness's results (the JSON file
// internal/scale writes beside its Markdown table) as a PNG: per daemon,
// heap, RSS and idle traffic against the number of daemons, and the time
// until all daemons see each other.
//
// Usage:
//
//	scalechart -o docs/scale.png internal/scale/scale-results.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// result holds the fields of the harness's result that are drawn.
type result struct {
	N             int
	Converge      int64 // nanoseconds; negative when the run did not converge
	HeapPerDaemon float64
	RSSPerDaemon  float64
	IdleLinkBps   float64
	IdleGossipBps float64
	IdleCores     float64
}

func main() {
	out := flag.String("o", "scale.png", "output PNG")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: scalechart [-o out.png] results.json")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out); err != nil {
		fmt.Fprintln(os.Stderr, "scalechart:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var rs []result
	if err := json.Unmarshal(b, &rs); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	series := func(f func(result) float64) plotter.XYs {
		var xy plotter.XYs
		for _, r := range rs {
			if r.Converge >= 0 {
				xy = append(xy, plotter.XY{X: float64(r.N), Y: f(r)})
			}
		}
		return xy
	}
	mem := plot.New()
	mem.Title.Text = "Memory per daemon"
	mem.X.Label.Text, mem.Y.Label.Text = "daemons", "KiB"
	if err := plotutil.AddLinePoints(mem,
		"heap", series(func(r result) float64 { return r.HeapPerDaemon / 1024 }),
		"RSS", series(func(r result) float64 { return r.RSSPerDaemon / 1024 })); err != nil {
		return err
	}
	traffic := plot.New()
	traffic.Title.Text = "Idle traffic per daemon"
	traffic.X.Label.Text, traffic.Y.Label.Text = "daemons", "bytes/s"
	if err := plotutil.AddLinePoints(traffic,
		"gossip", series(func(r result) float64 { return r.IdleGossipBps }),
		"data links", series(func(r result) float64 { return r.IdleLinkBps })); err != nil {
		return err
	}
	conv := plot.New()
	conv.Title.Text = "Time until all alive"
	conv.X.Label.Text, conv.Y.Label.Text = "daemons", "seconds"
	if err := plotutil.AddLinePoints(conv, "converged", series(func(r result) float64 { return float64(r.Converge) / 1e9 })); err != nil {
		return err
	}
	cpu := plot.New()
	cpu.Title.Text = "Idle CPU, whole network"
	cpu.X.Label.Text, cpu.Y.Label.Text = "daemons", "cores"
	if err := plotutil.AddLinePoints(cpu, "idle CPU", series(func(r result) float64 { return r.IdleCores })); err != nil {
		return err
	}
	img := vgimg.New(24*vg.Centimeter, 16*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Centimeter, PadY: vg.Centimeter}
	plots := [][]*plot.Plot{{mem, traffic}, {conv, cpu}}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
