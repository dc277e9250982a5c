package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iris-mesh/iris/internal/buildinfo"
)

// buildInfoGauge is iris_build_info: always 1, labelled with the running
// binary's module version and VCS revision, for dashboards and alerts
// that track rollouts.
func buildInfoGauge() prometheus.Collector {
	info := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "iris_build_info",
		Help: "Always 1; labels identify the build: module version, VCS revision (\"\" if unknown), Go version.",
		ConstLabels: prometheus.Labels{
			"version": info.Version, "revision": info.ShortRevision(), "goversion": info.GoVersion,
		},
	})
	g.Set(1)
	return g
}
