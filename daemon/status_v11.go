package daemon

import "github.com/prometheus/client_golang/prometheus"

// v11Metrics are the metrics of the protocol v1.1 patterns: surveys,
// push/pull, cancel and "no members".
func v11Metrics() []layerMetric {
	m := func(name, help string, labels prometheus.Labels, v func(*layerStats) float64) layerMetric {
		return layerMetric{prometheus.NewDesc(name, help, nil, labels), prometheus.CounterValue, v}
	}
	outcome := func(o string) prometheus.Labels { return prometheus.Labels{"outcome": o} }
	return []layerMetric{
		m("iris_cluster_surveys_total", "Surveys started on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.Surveys) }),
		m("iris_cluster_survey_answers_total", "Answers to surveys started on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.SurveyAnswers) }),
		m("iris_cluster_survey_missing_total", "Members asked by surveys started here that did not answer (late, failed, lost, quorum).", nil, func(s *layerStats) float64 { return float64(s.ext.SurveyMissing) }),
		m("iris_cluster_surveys_served_total", "Survey questions delivered to members on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.SurveysServed) }),
		m("iris_cluster_pushes_total", "Pushes from apps on this daemon, by outcome.", outcome("accepted"), func(s *layerStats) float64 { return float64(s.ext.PushesAccepted) }),
		m("iris_cluster_pushes_total", "Pushes from apps on this daemon, by outcome.", outcome("busy"), func(s *layerStats) float64 { return float64(s.ext.PushesBusy) }),
		m("iris_cluster_pushes_total", "Pushes from apps on this daemon, by outcome.", outcome("no_members"), func(s *layerStats) float64 { return float64(s.ext.PushesNoMember) }),
		m("iris_cluster_pushes_served_total", "Pushes queued for members on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.PushesServed) }),
		m("iris_cluster_cancels_total", "Requests cancelled by apps on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.Cancels) }),
		m("iris_cluster_cancels_served_total", "Cancels delivered to members on this daemon.", nil, func(s *layerStats) float64 { return float64(s.ext.CancelsServed) }),
		m("iris_relay_no_members_total", "App calls failed at once because their cluster had no members (v1.1 sessions).", nil, func(s *layerStats) float64 { return float64(s.relay.NoMembers) }),
		m("iris_relay_pushes_delivered_total", "Pushes queued for member apps of this daemon.", nil, func(s *layerStats) float64 { return float64(s.relay.PushesDelivered) }),
		m("iris_relay_pushes_dropped_total", "Pushes accepted for a member app but not confirmed handled, by reason.", prometheus.Labels{"reason": "member_gone"}, func(s *layerStats) float64 { return float64(s.relay.PushesDropped) }),
	}
}
