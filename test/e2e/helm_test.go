package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/mocs-dev/upload-operator/internal/config"
)

const chartDir = "dist/chart"

// helmBinary is the helm `make tools` builds (HELM_BIN, which the Makefile
// exports), or the newest one in bin/ when the test runs outside make.
func helmBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("HELM_BIN"); b != "" {
		return b
	}
	found, _ := filepath.Glob(filepath.Join(repo, "bin", "helm-*"))
	if len(found) == 0 {
		t.Fatal("no helm: set HELM_BIN or run `make tools` (it builds bin/helm-<version>)")
	}
	sort.Strings(found)
	return found[len(found)-1]
}

// helm runs the helm binary in the repository with its cache and config in a
// temporary directory, so that a test run never reads or writes the user's.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	return runTool(t, helmBinary(t), []string{"HELM_CACHE_HOME=" + home + "/cache", "HELM_CONFIG_HOME=" + home + "/config",
		"HELM_DATA_HOME=" + home + "/data"}, args...)
}

// helmTemplate renders the chart (with its CRD) for a release with values set
// by --set (sets) and --set-json (jsons).
func helmTemplate(t *testing.T, release, namespace string, sets, jsons []string) string {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", namespace, "--include-crds"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	for _, s := range jsons {
		args = append(args, "--set-json", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// chartCases are the value sets the chart is rendered and dry-run applied
// with: the defaults, and every option on in some case.
var chartCases = []struct {
	name        string
	sets, jsons []string
	want        []string // objects the dry run must name
	wantNot     []string
}{
	{name: "defaults",
		want: []string{"deployment.apps/helm-dry-run-upload-operator-controller-manager", "networkpolicy.networking.k8s.io/",
			"poddisruptionbudget.policy/", "validatingadmissionpolicy.admissionregistration.k8s.io/owner.uploads.mocs.dev",
			"clusterrole.rbac.authorization.k8s.io/helm-dry-run-upload-operator-metrics-reader",
			"role.rbac.authorization.k8s.io/helm-dry-run-upload-operator-tls-role",
			"customresourcedefinition.apiextensions.k8s.io/uploadsessions.uploads.mocs.dev"},
		wantNot: []string{"servicemonitor", "prometheusrule", "certificate", "issuer", "configmap"}},
	{name: "existing secrets, no network policy",
		sets: []string{"envSecret.enabled=false", "database.existingSecret=upload-pg", "database.urlKey=url",
			"redis.existingSecret=upload-redis", "redis.urlKey=url", "s3.existingSecret=upload-s3", "s3.bucket=mocs",
			"s3.region=eu-west-1", "s3.endpoint=https://s3.example.internal", "networkPolicy.enabled=false",
			"podDisruptionBudget.enabled=false", "admissionPolicy.enabled=false"},
		want:    []string{"deployment.apps/helm-dry-run-upload-operator-controller-manager"},
		wantNot: []string{"networkpolicy", "poddisruptionbudget", "validatingadmissionpolicy"}},
	{name: "everything on",
		sets: []string{"tls.provider=cert-manager", "serviceMonitor.enabled=true", "serviceMonitor.labels.release=prometheus",
			"prometheusRule.enabled=true", "prometheusRule.labels.release=prometheus", "grafanaDashboard.enabled=true",
			"database.existingSecret=upload-pg", "redis.existingSecret=upload-redis", "s3.existingSecret=upload-s3",
			"s3.bucket=mocs", "s3.presignEndpoint=https://s3.example.internal", "database.statementTimeout=20s",
			"redis.keyPrefix=mocs:", "settings.sessionTTL=2h", "settings.sessionRetention=72h",
			"settings.maxActiveSessionsPerUser=50", "settings.maxFileSizeBytes=10GiB", "settings.maxFilesPerSession=100",
			"settings.maxPartSizeBytes=64MiB", "settings.finalizeRateLimit=20/1m", "settings.sessionCreateRateLimit=60/1m",
			"settings.watchNamespace=uploads", "settings.slugConflictStrategy=PROMPT_USER", "settings.logLevel=debug",
			"settings.logFormat=text", "browserUploads.enabled=true", "replicas=3", "priorityClassName=system-cluster-critical",
			"image.digest=sha256:" + strings.Repeat("a", 64), "nodeSelector.kubernetes\\.io/os=linux",
			"podAnnotations.team=platform", "podLabels.tier=uploads", "service.annotations.team=platform",
			"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/uploads"},
		jsons: []string{`settings.adminGroups=["platform-admins"]`, `settings.uploadAllowedGroups=["uploaders","designers"]`,
			`settings.authAudiences=["uploads.mocs.dev","uploads"]`, `settings.allowedContentTypes=["application/pdf","image/png"]`,
			`browserUploads.allowedOrigins=["https://uploads.example.internal"]`,
			`extraEnv=[{"name":"ORPHAN_SWEEP_INTERVAL","value":"10m"}]`,
			`tolerations=[{"key":"dedicated","operator":"Equal","value":"uploads","effect":"NoSchedule"}]`,
			`affinity={"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":{"matchExpressions":[{"key":"pool","operator":"In","values":["io"]}]}}]}}`,
			`topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"app.kubernetes.io/name":"upload-operator"}}}]`,
			`networkPolicy.egressTo=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]`,
			`metricsReader.subjects=[{"kind":"ServiceAccount","name":"prometheus","namespace":"monitoring"}]`,
			`imagePullSecrets=[{"name":"registry"}]`},
		want: []string{"servicemonitor.monitoring.coreos.com/helm-dry-run-upload-operator-controller-manager",
			"prometheusrule.monitoring.coreos.com/helm-dry-run-upload-operator-alerts",
			"configmap/helm-dry-run-upload-operator-dashboard",
			"certificate.cert-manager.io/helm-dry-run-upload-operator-upload-api", "issuer.cert-manager.io/helm-dry-run-upload-operator-selfsigned",
			"clusterrolebinding.rbac.authorization.k8s.io/helm-dry-run-upload-operator-metrics-reader", "networkpolicy.networking.k8s.io/"}},
	{name: "TLS from a CA issuer",
		sets:    []string{"tls.provider=cert-manager", "tls.certManager.issuerRef.kind=ClusterIssuer", "tls.certManager.issuerRef.name=corp-ca"},
		want:    []string{"certificate.cert-manager.io/helm-dry-run-upload-operator-upload-api"},
		wantNot: []string{"issuer.cert-manager.io"}},
	{name: "TLS from an existing Secret",
		sets:    []string{"tls.provider=secret", "tls.secretName=upload-api-cert"},
		want:    []string{"deployment.apps/helm-dry-run-upload-operator-controller-manager"},
		wantNot: []string{"certificate", "issuer"}},
}

// The chart passes helm lint, with the defaults and with every option on.
func TestHelmLint(t *testing.T) {
	out, err := helm(t, "lint", "--strict", chartDir)
	if err != nil || !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") {
		t.Fatalf("helm lint %s: %v\n%s", chartDir, err, out)
	}
	for _, c := range chartCases {
		args := []string{"lint", "--strict", chartDir}
		for _, s := range c.sets {
			args = append(args, "--set", s)
		}
		for _, s := range c.jsons {
			args = append(args, "--set-json", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm lint with %s: %v\n%s", c.name, err, out)
		}
	}
}

// Values the operator would refuse at start-up are refused when the chart
// renders, saying what to set.
func TestHelmRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		sets       []string
	}{
		{"no database", "database.existingSecret is required", []string{"envSecret.enabled=false", "redis.existingSecret=r", "s3.bucket=b"}},
		{"no redis", "redis.existingSecret is required", []string{"envSecret.enabled=false", "database.existingSecret=d", "s3.bucket=b"}},
		{"no bucket", "s3.bucket is required", []string{"envSecret.enabled=false", "database.existingSecret=d", "redis.existingSecret=r"}},
		{"everyone an admin", "adminGroups", []string{"settings.adminGroups[0]=system:authenticated"}},
		{"browser uploads from nowhere", "browserUploads.allowedOrigins", []string{"browserUploads.enabled=true"}},
		{"a moving tag", "tag", []string{"image.tag=latest"}},
		{"an unknown value", "additional properties", []string{"sesionTTL=2h"}},
		{"an unknown TLS provider", "tls/provider", []string{"tls.provider=vault"}},
		{"cert-manager's former switch", "additional properties", []string{"tls.certManager.enabled=false"}},
		{"a ServiceMonitor with no CA to verify with", "serviceMonitor.enabled needs tls.enabled",
			[]string{"tls.enabled=false", "serviceMonitor.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "x", chartDir}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("rendered with %v", tc.sets)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("error does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

// testCRDs stand in for the Prometheus Operator's and cert-manager's CRDs,
// which envtest does not have: enough for the API server to accept (and a
// dry run to check) the chart's ServiceMonitor, PrometheusRule, Certificate
// and Issuer, though not to validate their fields.
var testCRDs = standInCRDs(
	[3]string{"monitoring.coreos.com", "ServiceMonitor", "servicemonitors"},
	[3]string{"monitoring.coreos.com", "PrometheusRule", "prometheusrules"},
	[3]string{"cert-manager.io", "Certificate", "certificates"},
	[3]string{"cert-manager.io", "Issuer", "issuers"},
)

// standInCRDs renders, per {group, kind, plural}, a namespaced v1 CRD whose
// schema accepts any object.
func standInCRDs(kinds ...[3]string) string {
	var b strings.Builder
	for _, k := range kinds {
		group, kind, plural := k[0], k[1], k[2]
		fmt.Fprintf(&b, `---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: %[3]s.%[1]s}
spec:
  group: %[1]s
  names: {kind: %[2]s, listKind: %[2]sList, plural: %[3]s, singular: %[4]s}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`, group, kind, plural, strings.ToLower(kind))
	}
	return b.String()
}

// The API server accepts everything the chart renders (server-side dry run),
// with the defaults and with each option on.
func TestHelmTemplateDryRun(t *testing.T) {
	const ns = "helm-dry-run"
	if o, err := kubectl(t, "create", "namespace", ns); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	if out, err := kubectlStdin(t, testCRDs, "apply", "--server-side", "--field-manager=helm-test", "-f", "-"); err != nil {
		t.Fatalf("stand-in CRDs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := kubectlStdin(t, testCRDs, "delete", "--ignore-not-found", "-f", "-"); err != nil {
			t.Errorf("deleting the stand-in CRDs: %v\n%s", err, out)
		}
	})
	mustKubectl(t, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com",
		"crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io")

	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			out := helmTemplate(t, "helm-dry-run", ns, c.sets, c.jsons)
			for _, env := range deploymentEnvNames(t, out) {
				if !operatorReads(t, env) {
					t.Errorf("the Deployment sets %s, which the operator does not read (internal/config)", env)
				}
			}
			res, err := kubectlStdin(t, out, "apply", "--server-side", "--dry-run=server", "--field-manager=helm-test",
				"--force-conflicts", "-f", "-")
			if err != nil {
				t.Fatalf("server-side dry run: %v\n%s", err, res)
			}
			for _, w := range c.want {
				if !strings.Contains(res, w) {
					t.Errorf("dry run does not name %q:\n%s", w, res)
				}
			}
			for _, w := range c.wantNot {
				if strings.Contains(res, w+".") || strings.Contains(res, w+"/") {
					t.Errorf("dry run names %q, which these values leave out:\n%s", w, res)
				}
			}
			if !strings.Contains(res, "(server dry run)") {
				t.Errorf("not a dry run:\n%s", res)
			}
		})
	}
}

// deploymentEnvNames are the names of the env vars the rendered Deployment sets.
func deploymentEnvNames(t *testing.T, rendered string) []string {
	t.Helper()
	var names []string
	for _, o := range parseManifests(t, rendered) {
		if o.kind() != "Deployment" {
			continue
		}
		for _, c := range dig(o.obj, "spec", "template", "spec", "containers").([]any) {
			env, _ := c.(map[string]any)["env"].([]any)
			for _, e := range env {
				names = append(names, e.(map[string]any)["name"].(string))
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no Deployment with env vars in the chart's output")
	}
	return names
}

// operatorReads tells whether the variable is one of the operator's settings
// (internal/config's table, the one Load reads), or the Go runtime's.
func operatorReads(t *testing.T, name string) bool {
	t.Helper()
	if name == "GOMEMLIMIT" {
		return true
	}
	return slices.ContainsFunc(config.Settings(), func(s config.Setting) bool { return s.Env == name })
}

// With grafanaDashboard.enabled the chart renders config/grafana's dashboard,
// unchanged, into a ConfigMap carrying the label Grafana's sidecar selects on,
// in the namespace the sidecar watches.
func TestHelmDashboardConfigMapCarriesTheDashboard(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repo, "config", "grafana", "upload-operator-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := helmTemplate(t, "uploads", "uploads", []string{"grafanaDashboard.enabled=true",
		"grafanaDashboard.namespace=monitoring", "grafanaDashboard.annotations.grafana_folder=Uploads"}, nil)
	var cm *manifest
	for _, m := range parseManifests(t, out) {
		if m.kind() == "ConfigMap" {
			cm = &m
		}
	}
	if cm == nil {
		t.Fatalf("no ConfigMap rendered:\n%s", out)
	}
	meta := func(path ...string) any { return dig(cm.obj, append([]string{"metadata"}, path...)...) }
	if cm.name() != "uploads-upload-operator-dashboard" || meta("namespace") != "monitoring" ||
		meta("labels", "grafana_dashboard") != "1" || meta("annotations", "grafana_folder") != "Uploads" {
		t.Errorf("ConfigMap %s in %v, labels %v, annotations %v; want uploads-upload-operator-dashboard in monitoring, grafana_dashboard=1, grafana_folder=Uploads",
			cm.name(), meta("namespace"), meta("labels"), meta("annotations"))
	}
	got, _ := dig(cm.obj, "data", "upload-operator-dashboard.json").(string)
	if got != strings.TrimRight(string(want), "\n") {
		t.Errorf("the ConfigMap's dashboard (%d bytes) is not config/grafana's (%d bytes)", len(got), len(want))
	}
	if !json.Valid([]byte(got)) {
		t.Error("the ConfigMap's dashboard is not valid JSON")
	}
}

// The chart's defaults install what config/default does, and its TLS,
// ServiceMonitor and alert options what config/tls and config/prometheus add:
// the same objects under the same names (for a release called
// upload-operator), the CRD and alert rules byte for byte, the same RBAC
// rules, Deployment (env, ports, probes, security contexts, resources,
// volumes), Services, PDB, NetworkPolicy and admission policy. Labels and
// selectors may add to config/'s, not differ.
func TestHelmChartInStepWithConfig(t *testing.T) {
	t.Run("copied files", func(t *testing.T) {
		bases, err := filepath.Glob(filepath.Join(repo, "config", "crd", "bases", "*.yaml"))
		if err != nil || len(bases) == 0 {
			t.Fatalf("no CRD in config/crd/bases: %v", err)
		}
		charted, _ := filepath.Glob(filepath.Join(repo, chartDir, "crds", "*.yaml"))
		if len(charted) != len(bases) {
			t.Errorf("%s/crds has %d files, config/crd/bases %d: run `make manifests`", chartDir, len(charted), len(bases))
		}
		for _, b := range bases {
			want, err := os.ReadFile(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(repo, chartDir, "crds", filepath.Base(b)))
			if err != nil {
				t.Errorf("%v: run `make manifests`", err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s/crds/%s differs from config/crd/bases: run `make manifests`", chartDir, filepath.Base(b))
			}
		}
		for _, src := range []string{"config/prometheus/alerts.yaml", "config/grafana/upload-operator-dashboard.json"} {
			want, err := os.ReadFile(filepath.Join(repo, src))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(repo, chartDir, "files", filepath.Base(src))); err != nil {
				t.Errorf("%v: run `make manifests`", err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s/files/%s differs from %s: run `make manifests`", chartDir, filepath.Base(src), src)
			}
		}
	})

	for _, c := range []struct{ dir, set string }{{"config/default", ""}, {"config/tls", "tls.provider=cert-manager"}} {
		t.Run(c.dir, func(t *testing.T) {
			var sets []string
			if c.set != "" {
				sets = append(sets, c.set)
			}
			want := parseManifests(t, mustKubectl(t, "kustomize", c.dir))
			got := parseManifests(t, helmTemplate(t, "upload-operator", "upload-operator-system", sets, nil))
			for _, d := range compareManifests(want, got) {
				t.Error(d)
			}
		})
	}

	// config/prometheus's objects are applied on their own, under the names
	// their files give them: compared by kind.
	t.Run("config/prometheus", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(repo, "config", "prometheus", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]manifest{}
		for _, m := range parseManifests(t, helmTemplate(t, "upload-operator", "upload-operator-system",
			[]string{"serviceMonitor.enabled=true", "prometheusRule.enabled=true"}, nil)) {
			got[m.kind()] = m
		}
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range parseManifests(t, string(b)) {
				g, ok := got[w.kind()]
				if !ok {
					t.Errorf("%s (%s): in config/prometheus, not in the chart", w.id(), filepath.Base(f))
					continue
				}
				var diffs []string
				if labels := dig(w.obj, "metadata", "labels"); labels != nil {
					walk(w.kind()+" ("+filepath.Base(f)+")", "metadata.labels", normalize(labels),
						normalize(dig(g.obj, "metadata", "labels")), &diffs)
				}
				walk(w.kind()+" ("+filepath.Base(f)+")", "spec", normalize(w.obj["spec"]), normalize(g.obj["spec"]), &diffs)
				for _, d := range diffs {
					t.Error(d)
				}
			}
		}
	})
}

type manifest struct{ obj map[string]any }

func (m manifest) kind() string { s, _ := m.obj["kind"].(string); return s }
func (m manifest) name() string { s, _ := dig(m.obj, "metadata", "name").(string); return s }
func (m manifest) id() string   { return m.kind() + "/" + m.name() }

func parseManifests(t *testing.T, out string) []manifest {
	t.Helper()
	var ms []manifest
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if len(obj) > 0 {
			ms = append(ms, manifest{obj})
		}
	}
	return ms
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// compareManifests names every way the chart's objects (got) differ from
// config/'s (want). config/'s Namespace is left to Helm (--create-namespace).
func compareManifests(want, got []manifest) []string {
	var diffs []string
	byID := map[string]manifest{}
	for _, g := range got {
		byID[g.id()] = g
	}
	seen := map[string]bool{}
	for _, w := range want {
		if w.kind() == "Namespace" {
			continue
		}
		seen[w.id()] = true
		g, ok := byID[w.id()]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: in config/, not in the chart", w.id()))
			continue
		}
		diffs = append(diffs, compareObject(w, g)...)
	}
	for _, g := range got {
		if !seen[g.id()] {
			diffs = append(diffs, fmt.Sprintf("%s: in the chart, not in config/", g.id()))
		}
	}
	return diffs
}

// labelPaths are label maps and selectors, where the chart adds its release
// and version labels to config/'s.
var labelPaths = []string{
	"metadata.labels", "metadata.annotations", "spec.selector", "spec.selector.matchLabels", "spec.podSelector.matchLabels",
	"spec.template.metadata.labels", "spec.template.spec.topologySpreadConstraints[*].labelSelector.matchLabels",
}

// chartMayAdd are the only fields the chart sets where config/ leaves them
// to the API server's defaults.
var chartMayAdd = []string{
	"metadata.labels", "metadata.annotations", "spec.type", "spec.template.spec.containers[*].imagePullPolicy",
}

// compareObject compares an object of config/ with the chart's, but for its
// name and namespace (compared by id, and set by the release).
func compareObject(want, got manifest) []string {
	var diffs []string
	walk(want.id(), "", normalize(want.obj), normalize(got.obj), &diffs)
	return diffs
}

var listIndex = regexp.MustCompile(`\[[^\]]*\]`)

func walk(id, path string, w, g any, diffs *[]string) {
	if path == "metadata.name" || path == "metadata.namespace" {
		return
	}
	join := func(k string) string {
		if path == "" || strings.HasPrefix(k, "[") {
			return path + k
		}
		return path + "." + k
	}
	star := func(p string) string { return listIndex.ReplaceAllString(p, "[*]") }
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s %s: config/ has %s, the chart %s", id, path, show(w), show(g)))
			return
		}
		for _, k := range sortedKeys(wv) {
			if _, ok := gv[k]; !ok {
				*diffs = append(*diffs, fmt.Sprintf("%s %s: in config/ (%s), not in the chart", id, join(k), show(wv[k])))
				continue
			}
			walk(id, join(k), wv[k], gv[k], diffs)
		}
		for _, k := range sortedKeys(gv) {
			if _, ok := wv[k]; ok || slices.Contains(labelPaths, star(path)) || slices.Contains(chartMayAdd, star(join(k))) {
				continue
			}
			*diffs = append(*diffs, fmt.Sprintf("%s %s: in the chart (%s), not in config/", id, join(k), show(gv[k])))
		}
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			*diffs = append(*diffs, fmt.Sprintf("%s %s: config/ has %s, the chart %s", id, path, show(w), show(g)))
			return
		}
		for i := range wv {
			walk(id, fmt.Sprintf("%s[%d]", path, i), wv[i], gv[i], diffs)
		}
	case string:
		// CEL ignores whitespace, and YAML parsers differ on the line breaks
		// of a folded expression (kustomize keeps one more than kubectl).
		if gs, ok := g.(string); ok && celFields[path[strings.LastIndex(path, ".")+1:]] {
			w, g = strings.Join(strings.Fields(wv), " "), strings.Join(strings.Fields(gs), " ")
		}
		if w != g {
			*diffs = append(*diffs, fmt.Sprintf("%s %s: config/ has %s, the chart %s", id, path, show(w), show(g)))
		}
	default:
		if !reflect.DeepEqual(w, g) {
			*diffs = append(*diffs, fmt.Sprintf("%s %s: config/ has %s, the chart %s", id, path, show(w), show(g)))
		}
	}
}

var celFields = map[string]bool{"expression": true, "messageExpression": true}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// normalize turns lists whose items all have distinct names into maps keyed
// "[name]", so that a difference is reported by name (env[GOMEMLIMIT]), not
// by position.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		keyed := make(map[string]any, len(x))
		for _, e := range x {
			m, ok := e.(map[string]any)
			name, _ := dig(m, "name").(string)
			if !ok || name == "" {
				keyed = nil
				break
			}
			if _, dup := keyed["["+name+"]"]; dup {
				keyed = nil
				break
			}
			keyed["["+name+"]"] = normalize(e)
		}
		if len(keyed) > 0 {
			return keyed
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Prometheus verifies the operator: every ServiceMonitor shipped (config/'s
// and the chart's with each TLS provider) trusts the CA certificate the
// operator publishes in a ConfigMap, by the metrics Service's name, with no
// insecureSkipVerify and no CA read from a Secret (which holds a key).
func TestServiceMonitorVerifiesWithThePublishedCA(t *testing.T) {
	monitors := map[string]string{}
	b, err := os.ReadFile(filepath.Join(repo, "config", "prometheus", "monitor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	monitors["config/prometheus"] = string(b)
	for _, provider := range []string{"operator", "cert-manager", "secret"} {
		monitors["chart, tls.provider="+provider] = helmTemplate(t, "upload-operator", "upload-operator-system",
			[]string{"serviceMonitor.enabled=true", "tls.provider=" + provider}, nil)
	}
	for name, out := range monitors {
		t.Run(name, func(t *testing.T) {
			var found bool
			for _, m := range parseManifests(t, out) {
				if m.kind() != "ServiceMonitor" {
					continue
				}
				found = true
				endpoints, _ := dig(m.obj, "spec", "endpoints").([]any)
				for _, e := range endpoints {
					tlsConfig, _ := dig(e, "tlsConfig").(map[string]any)
					if v, ok := tlsConfig["insecureSkipVerify"]; ok {
						t.Errorf("insecureSkipVerify: %v", v)
					}
					if s := dig(tlsConfig, "ca", "secret"); s != nil {
						t.Errorf("the CA is read from a Secret: %v", s)
					}
					if cm := dig(tlsConfig, "ca", "configMap", "name"); cm != "upload-operator-ca" {
						t.Errorf("CA from ConfigMap %v, want upload-operator-ca (TLS_CA_CONFIGMAP)", cm)
					}
					if sn := tlsConfig["serverName"]; sn != "upload-operator-metrics.upload-operator-system.svc" {
						t.Errorf("serverName %v, want the metrics Service's name", sn)
					}
				}
			}
			if !found {
				t.Fatal("no ServiceMonitor rendered")
			}
		})
	}
}
