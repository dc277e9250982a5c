package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestRateRing(t *testing.T) {
	r := newRateRing(3)
	if got := r.rates(); len(got.Series) != len(patternCounters) || len(got.Series[0].Rates) != 0 || got.End != 0 {
		t.Fatalf("empty ring: %+v", got)
	}
	t0 := time.Unix(1000, 0)
	vals := func(v uint64) []uint64 {
		out := make([]uint64, len(patternCounters))
		for i := range out {
			out[i] = v * uint64(i+1)
		}
		return out
	}
	// Counters 0, 10, 30, 60, 100 at 1 s steps, then one 2 s step to 120:
	// the ring keeps 4 samples, so 3 rates: 30, 40, 10.
	for i, v := range []uint64{0, 10, 30, 60, 100} {
		r.add(t0.Add(time.Duration(i)*time.Second), vals(v))
	}
	r.add(t0.Add(6*time.Second), vals(120))
	got := r.rates()
	if got.End != t0.Add(6*time.Second).UnixMilli() || got.Step != 1 {
		t.Fatalf("end %d step %v", got.End, got.Step)
	}
	for i, s := range got.Series {
		k := float64(i + 1)
		want := []float64{30 * k, 40 * k, 10 * k}
		if len(s.Rates) != 3 || s.Rates[0] != want[0] || s.Rates[1] != want[1] || s.Rates[2] != want[2] {
			t.Errorf("%s: rates %v, want %v", s.Name, s.Rates, want)
		}
		if s.Total != 120*uint64(i+1) || s.Name != patternCounters[i].name || s.Label == "" {
			t.Errorf("series %d = %+v", i, s)
		}
	}
	// A counter that went backwards (it cannot, but) reads as 0, not huge.
	r.add(t0.Add(7*time.Second), vals(1))
	if s := r.rates().Series[0].Rates; s[len(s)-1] != 0 {
		t.Fatalf("backwards counter: %v", s)
	}
}

func TestDashboardAPI(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "test", key))
	b := startDaemon(t, testConfig(t, "b", "test", key, a.Addr()))
	if _, err := b.Cluster().Register("svc", echoMember{}, 0); err != nil {
		t.Fatal(err)
	}
	var db Dashboard
	waitFor(t, 10*time.Second, "a's dashboard to list b's member and two samples", func() bool {
		body, err := sc.get(a.StatusAddr(), "/api/dashboard")
		if err != nil {
			t.Fatal(err)
		}
		db = Dashboard{}
		if err := json.Unmarshal([]byte(body), &db); err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		return len(db.Clusters) == 1 && db.Clusters[0].Members["b"] == 1 && len(db.Rates.Series[0].Rates) >= 1
	})
	if len(db.Daemons) != 2 || db.Daemons[0].ID != "a" || !db.Daemons[0].Self || db.Daemons[1].ID != "b" ||
		db.Daemons[1].State != "alive" || db.Network != "test" || !db.Ready.Ready {
		t.Fatalf("dashboard = %+v", db)
	}
	if c := db.Clusters[0]; c.Name != "svc" || c.Total != 1 || len(c.Members) != 1 {
		t.Fatalf("cluster = %+v", c)
	}
	// /dashboard/ sends the browser to the page at /.
	noRedirect := &http.Client{Transport: sc.c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + a.StatusAddr() + "/dashboard/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "../" {
		t.Fatalf("GET /dashboard/ = %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	// The page and its assets are served, with a CSP.
	for path, want := range map[string]string{
		"/":                      "<title>Iris dashboard</title>",
		"/dashboard/app.js":      "/api/dashboard",
		"/dashboard/style.css":   ".chart",
		"/dashboard/favicon.svg": "<svg",
	} {
		resp, err := sc.c.Get("http://" + a.StatusAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %s, body lacks %q", path, resp.Status, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
}
