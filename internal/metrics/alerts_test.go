package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	// Registers controller-runtime's reconcile and workqueue metrics, as
	// the manager's binary does.
	_ "sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/mocs-dev/upload-operator/internal/partbuf"
)

const (
	alertsFile    = "../../config/prometheus/alerts.yaml"
	dashboardFile = "../../config/grafana/upload-operator-dashboard.json"
)

// Every alert and every dashboard query parses as PromQL and names only
// metrics the manager serves, and a rule naming a metric that does not exist
// is refused: a selector of an unknown name is valid PromQL that never fires
// and a panel that stays empty.
func TestAlertsAndDashboardNameOnlyMetricsThatExist(t *testing.T) {
	names := servedMetricNames(t)
	for _, want := range []string{"mocupload_part_received_bytes_total", "mocupload_part_duration_seconds_bucket",
		"controller_runtime_reconcile_errors_total", "workqueue_depth"} {
		if !names[want] {
			t.Fatalf("%s missing from the registry's names: the list below is incomplete", want)
		}
	}
	list := filepath.Join(t.TempDir(), "metrics.txt")
	var b strings.Builder
	for n := range names {
		b.WriteString(n + "\n")
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	check := buildPromcheck(t)
	alerts, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dashboard := dashboardAsRules(t)
	if out, err := exec.Command(check, "-metrics", list, alerts, dashboard).CombinedOutput(); err != nil {
		t.Fatalf("alerts check: %v\n%s", err, out)
	}

	text, err := os.ReadFile(alerts)
	if err != nil {
		t.Fatal(err)
	}
	bogus := filepath.Join(t.TempDir(), "bogus.yaml")
	planted := strings.Replace(string(text), "mocupload_stale_lock_recoveries_total", "mocupload_stale_lock_recoveries_bogus_total", 1)
	if planted == string(text) {
		t.Fatal("nothing to plant the bogus name in")
	}
	if err := os.WriteFile(bogus, []byte(planted), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(check, "-metrics", list, bogus).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !bytes.Contains(out, []byte("unknown metric mocupload_stale_lock_recoveries_bogus_total")) {
		t.Fatalf("a bogus metric name passed the check: %v\n%s", err, out)
	}
}

// Every alert says how bad it is and where its runbook is, and that anchor
// exists in docs/operations.md.
func TestAlertsLinkTheirRunbooks(t *testing.T) {
	text, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert       string            `json:"alert"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(text, &rule); err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("alert name %q empty or repeated", r.Alert)
			}
			seen[r.Alert] = true
			switch r.Labels["severity"] {
			case "critical", "warning", "info":
			default:
				t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			doc, anchor, ok := strings.Cut(r.Annotations["runbook_url"], "#")
			if !ok || doc != "docs/operations.md" || !bytes.Contains(ops, []byte(`<a id="`+anchor+`"></a>`)) {
				t.Errorf("%s: runbook_url %q is not an anchor of docs/operations.md", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no alerts")
	}
}

// dashboardAsRules writes the dashboard's queries as recording rules, with
// Grafana's variables replaced by values PromQL accepts, for promcheck.
func dashboardAsRules(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(text, &dash); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			rules = append(rules, rule{Record: p.Title, Expr: vars.Replace(tg.Expr)})
		}
	}
	if len(rules) == 0 {
		t.Fatal("no queries in the dashboard")
	}
	out, err := json.Marshal(map[string]any{"kind": "PrometheusRule",
		"spec": map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	// A Desc tells its name only through String.
	fqName          = regexp.MustCompile(`fqName: "([^"]+)"`)
	registerBuffers sync.Once
)

// servedMetricNames lists the series names the manager's registry can
// serve: every described metric (vectors without children included, which
// Gather leaves out), with a histogram's _bucket, _sum and _count.
func servedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	// Once per process, as the manager does: another registration of the
	// same names (go test -count 2) would panic.
	registerBuffers.Do(func() { RegisterPartBuffers(partbuf.New(1<<20, os.TempDir())) })
	// Children for the vectors whose type Gather must see.
	PartDuration.WithLabelValues("ok")

	descs := make(chan *prometheus.Desc)
	go func() {
		crmetrics.Registry.(prometheus.Collector).Describe(descs)
		close(descs)
	}()
	described := map[string]bool{}
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			described[m[1]] = true
		}
	}
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]dto.MetricType{}
	for _, f := range families {
		types[f.GetName()] = f.GetType()
	}
	names := map[string]bool{}
	for n := range described {
		names[n] = true
		typ, known := types[n]
		// Vectors of controller-runtime without children show no type: its
		// durations (_seconds) are histograms, apart from two workqueue gauges.
		histogram := typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY ||
			(!known && strings.HasSuffix(n, "_seconds") && !strings.HasPrefix(n, "workqueue_unfinished") &&
				!strings.HasPrefix(n, "workqueue_longest"))
		if histogram {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

// buildPromcheck builds hack/promcheck, a module of its own so the
// Prometheus server's dependencies stay out of this go.mod.
func buildPromcheck(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build hack/promcheck")
	}
	bin := filepath.Join(t.TempDir(), "promcheck")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../../hack/promcheck"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hack/promcheck: %v\n%s", err, out)
	}
	return bin
}
