package daemon

import "github.com/prometheus/client_golang/prometheus"

// subsMetrics are the metrics of subscriptions (issue 10): events dropped
// by reason, GAP notices, confirmations and wildcard patterns.
func subsMetrics() []layerMetric {
	m := func(name, help string, typ prometheus.ValueType, labels prometheus.Labels, v func(*layerStats) float64) layerMetric {
		return layerMetric{prometheus.NewDesc(name, help, nil, labels), typ, v}
	}
	cnt, gauge := prometheus.CounterValue, prometheus.GaugeValue
	reason := func(r string) prometheus.Labels { return prometheus.Labels{"reason": r} }
	const dropped = "Events dropped before reaching a subscriber, by reason: slow_consumer (the app's send queue was full; v1.1 apps are told with GAP), link_queue (the copy for another daemon did not fit the link's queue)."
	return []layerMetric{
		m("iris_relay_events_dropped_total", dropped, cnt, reason("slow_consumer"), func(s *layerStats) float64 { return float64(s.relay.DroppedEvents) }),
		m("iris_relay_events_dropped_total", dropped, cnt, reason("link_queue"), func(s *layerStats) float64 { return float64(s.subjects.EventsDropped) }),
		m("iris_relay_publisher_stalls_total", "Event deliveries that waited for a subscriber's queue past half its limits (publisher pushback, at most 100 ms each).", cnt, nil, func(s *layerStats) float64 { return float64(s.relay.PublisherStalls) }),
		m("iris_relay_gap_notices_total", "GAP notices sent to v1.1 apps that lost events.", cnt, nil, func(s *layerStats) float64 { return float64(s.relay.GapNotices) }),
		m("iris_relay_subscribes_confirmed_total", "v1.1 SUBSCRIBEs answered once every daemon knew them (or the wait ended).", cnt, nil, func(s *layerStats) float64 { return float64(s.relay.SubscribesConfirmed) }),
		m("iris_relay_registers_confirmed_total", "v1.1 service registrations answered once every daemon knew them (or the wait ended).", cnt, nil, func(s *layerStats) float64 { return float64(s.relay.RegistersConfirmed) }),
		m("iris_cluster_unconfirmed_total", "Waits for the other daemons to confirm this daemon's interest table that ended with some unconfirmed.", cnt, nil, func(s *layerStats) float64 { return float64(s.subjects.Unconfirmed) }),
		m("iris_cluster_patterns", "Wildcard subscriptions on this daemon.", gauge, nil, func(s *layerStats) float64 { return float64(s.subjects.Patterns) }),
		m("iris_cluster_remote_patterns", "Wildcard subjects of other daemons held here (one per daemon and subject).", gauge, nil, func(s *layerStats) float64 { return float64(s.subjects.RemotePatterns) }),
	}
}
