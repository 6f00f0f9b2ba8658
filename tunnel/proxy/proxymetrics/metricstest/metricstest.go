// Package metricstest finds series in parsed Prometheus metrics, for the
// tests that read the proxy's /metrics (with expfmt's parser) or its
// registry (Gather): one way of picking a series by its labels.
package metricstest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// Series returns the series of fams' family name whose labels include
// the given name, value pairs; it fails t when there is none.
func Series(t testing.TB, fams []*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

// Value returns the value of a counter or gauge series.
func Value(t testing.TB, m *dto.Metric) float64 {
	t.Helper()
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("series %v is neither a counter nor a gauge", m.GetLabel())
	return 0
}
