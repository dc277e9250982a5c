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

// PatternStatus counts the protocol v1.1 patterns since the daemon
// started; it is Status.Patterns.
type PatternStatus struct {
	Surveys        uint64 `json:"surveys"`         // started by apps here
	SurveyAnswers  uint64 `json:"survey_answers"`  // answers they got
	SurveyMissing  uint64 `json:"survey_missing"`  // members asked that did not answer
	SurveysServed  uint64 `json:"surveys_served"`  // questions delivered to members here
	PushesAccepted uint64 `json:"pushes_accepted"` // pushes from apps here taken by a member
	PushesBusy     uint64 `json:"pushes_busy"`     // refused: every member's queue was full
	PushesServed   uint64 `json:"pushes_served"`   // pushes queued for members here
	PushesDropped  uint64 `json:"pushes_dropped"`  // accepted for a member that left before confirming them
	Cancels        uint64 `json:"cancels"`         // requests cancelled by apps here
	NoMembers      uint64 `json:"no_members"`      // calls failed at once: no members
}

func (d *Daemon) patternStatus() PatternStatus {
	e := d.node.ExtStats()
	p := PatternStatus{
		Surveys: e.Surveys, SurveyAnswers: e.SurveyAnswers, SurveyMissing: e.SurveyMissing,
		SurveysServed: e.SurveysServed, PushesAccepted: e.PushesAccepted, PushesBusy: e.PushesBusy,
		PushesServed: e.PushesServed, Cancels: e.Cancels,
	}
	if d.rel != nil {
		r := d.rel.Stats()
		p.PushesDropped, p.NoMembers = r.PushesDropped, r.NoMembers
	}
	return p
}
