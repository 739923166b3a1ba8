// Package cluster runs the operator as users do: its image, built here, as
// Pods of `make deploy` on a single-node cluster whose kubelet, containerd and
// runc run them in a network namespace of the test's own
// (internal/testenv/localenv.Cluster).
package cluster

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

const (
	image    = "example.test/upload-operator:cluster-test"
	pauseRef = "example.test/pause:1"
)

// The operator as users install it, on a single-node cluster whose kubelet,
// containerd, runc and kube-proxy run its Pods in a network namespace of the
// test's own: first `make deploy` of config/default with the image `make
// image` builds (a Secret with the addresses of PostgreSQL, Redis and S3 and
// a kubeconfig naming the API server at the node's address), then `helm
// install` of dist/chart. Each must run two replicas Ready through kubelet's
// probes with one leader, take uploads through its Service over TLS verified
// against the CA it publishes, finish a finalize whose leader is deleted
// under it, and keep every upload going through a rolling restart.
func TestOperatorRunsAsPodsOfADeployment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a node needs root (network namespaces, containerd, runc, iptables)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	h := startHarness(ctx, t)
	began := time.Now()

	// make deploy, with the kubeconfig mounted where KUBECONFIG points.
	kust := install{ns: "upload-operator-system", deployment: "upload-operator-controller-manager",
		apiService: "upload-operator-upload-api", metricsService: "upload-operator-metrics", caConfigMap: "upload-operator-ca"}
	h.kubectl("create", "namespace", kust.ns)
	h.envSecret(kust.ns, "upload-operator-env")
	h.make("deploy", "IMG="+image)
	h.kubectl("-n", kust.ns, "patch", "deployment", kust.deployment, "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"env","secret":{"secretName":"upload-operator-env","items":[{"key":"kubeconfig","path":"kubeconfig"}]}}},`+
			`{"op":"add","path":"/spec/template/spec/containers/0/volumeMounts/-","value":{"name":"env","mountPath":"/var/run/secrets/upload-operator-env","readOnly":true}}]`)
	pods := h.readyPods(kust, 2, nil, 4*time.Minute)
	h.leader(kust, pods)
	pool := h.caPool(kust)
	t.Logf("make deploy: Pods %s Ready after %s", names(pods), time.Since(began).Round(time.Second))

	// Metrics over HTTPS, verified by the metrics Service's name, for a
	// ServiceAccount bound to config/rbac's metrics-reader role only.
	h.kubectl("create", "namespace", "monitoring")
	h.kubectl("-n", "monitoring", "create", "serviceaccount", "prometheus")
	h.kubectl("create", "clusterrolebinding", "prometheus-metrics", "--clusterrole=upload-operator-metrics-reader",
		"--serviceaccount=monitoring:prometheus")
	scraper := h.token("monitoring", "prometheus", nil)
	h.metricsForTheReaderOnly(kust, pool, pods[1], scraper)

	h.uploadSpillsToTheEmptyDir(kust, pool, pods, scraper)
	pods = h.leaderDeletedMidFinalize(kust, pool, pods, false)
	pods = h.leaderDeletedMidFinalize(kust, pool, pods, true)
	h.rolloutDuringUploads(kust, pool, pods, "kubectl rollout restart", func() {
		h.kubectl("-n", kust.ns, "rollout", "restart", "deployment/"+kust.deployment)
	})

	// make undeploy removes everything it created, the Pods with the namespace.
	h.make("undeploy")
	waitFor(t, 2*time.Minute, "the namespace and its Pods gone", func() (bool, string) {
		_, err := h.cs.CoreV1().Namespaces().Get(ctx, kust.ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		list, _ := h.cs.CoreV1().Pods(kust.ns).List(ctx, metav1.ListOptions{})
		return false, fmt.Sprintf("namespace still there (%v), %d Pods", err, len(list.Items))
	})
	for _, obj := range []string{"clusterrole/upload-operator-manager-role", "crd/uploadsessions.uploads.mocs.dev"} {
		if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", h.st.Kubeconfig, "get", obj).CombinedOutput(); err == nil { //nolint:gosec // the test's own command
			t.Errorf("%s still there after make undeploy:\n%s", obj, out)
		}
	}

	// The Helm chart, TLS on (the operator's own CA, the default), then
	// helm upgrade to a changed value while uploads run.
	began = time.Now()
	chart := install{ns: "mocs-uploads", deployment: "upload-operator-controller-manager",
		apiService: "upload-operator-upload-api", metricsService: "upload-operator-metrics", caConfigMap: "upload-operator-ca"}
	h.kubectl("create", "namespace", chart.ns)
	h.envSecret(chart.ns, "upload-operator-env")
	repo, tag, _ := strings.Cut(image, ":")
	values := []string{"--set", "image.repository=" + repo, "--set", "image.tag=" + tag,
		"--set", "envSecret.name=upload-operator-env", "--set", "tls.enabled=true",
		"--set", "extraVolumes[0].name=env", "--set", "extraVolumes[0].secret.secretName=upload-operator-env",
		"--set", "extraVolumes[0].secret.items[0].key=kubeconfig", "--set", "extraVolumes[0].secret.items[0].path=kubeconfig",
		"--set", "extraVolumeMounts[0].name=env", "--set", "extraVolumeMounts[0].mountPath=/var/run/secrets/upload-operator-env",
		"--set", "extraVolumeMounts[0].readOnly=true"}
	h.helm(append([]string{"install", "upload-operator", "dist/chart", "-n", chart.ns}, values...)...)
	pods = h.readyPods(chart, 2, nil, 4*time.Minute)
	h.leader(chart, pods)
	pool = h.caPool(chart)
	t.Logf("helm install: Pods %s Ready after %s", names(pods), time.Since(began).Round(time.Second))
	h.rolloutDuringUploads(chart, pool, pods, "helm upgrade", func() {
		h.helm("upgrade", "upload-operator", "dist/chart", "-n", chart.ns, "--reuse-values", "--set", "settings.logLevel=debug")
	})
	h.helm("uninstall", "upload-operator", "-n", chart.ns, "--wait")
	waitFor(t, 2*time.Minute, "the chart's Pods gone", func() (bool, string) {
		list, err := h.cs.CoreV1().Pods(chart.ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, fmt.Sprintf("%d Pods (%v)", len(list.Items), err)
	})
}

// metricsForTheReaderOnly scrapes /metrics as the metrics reader (200) and
// as a tenant (403).
func (h *harness) metricsForTheReaderOnly(in install, pool *x509.CertPool, pod corev1.Pod, reader string) {
	t := h.t
	t.Helper()
	scrape := h.scrapeClient(in, pool)
	for _, tc := range []struct {
		who, token string
		status     int
	}{{"monitoring/prometheus", reader, http.StatusOK}, {"team-a/builder", h.token("team-a", "builder", nil), http.StatusForbidden}} {
		req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, "https://"+pod.Status.PodIP+":8080/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tc.token)
		resp, err := scrape.Do(req)
		if err != nil {
			t.Fatalf("scrape as %s: %v", tc.who, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("scrape as %s = %d, want %d", tc.who, resp.StatusCode, tc.status)
		}
	}
}

// uploadSpillsToTheEmptyDir uploads with mocupload through the Service a file whose parts in
// flight exceed a tenant's share of part memory on a replica, so parts spill to SPILL_DIR,
// the emptyDir under the read-only root (a spill elsewhere would fail).
func (h *harness) uploadSpillsToTheEmptyDir(in install, pool *x509.CertPool, pods []corev1.Pod, scraper string) {
	t := h.t
	t.Helper()
	spills := func() (n float64) {
		for _, p := range pods {
			n += h.metric(in, pool, p, scraper, "mocupload_part_buffer_spills_total")
		}
		return n
	}
	before := spills()
	const size = 256 << 20
	file := filepath.Join(h.dir, "model.ldr")
	writeFile(t, file, size, 'A')
	defer os.Remove(file)
	h.mocuploadBin()
	began := time.Now()
	// 32 MiB parts: three in flight on a replica pass a tenant's share
	// (a quarter of 256 MiB), and the per-user cap on parts in flight
	// (8) does not stop them first as it does for the default 8 MiB.
	out := h.mocupload(in, h.uploader, "--concurrency", "8", "upload", "--title", "Spilled Castle", "--part-size", strconv.Itoa(32<<20), file)
	var id string
	if err := h.db.QueryRow(h.ctx, `SELECT upload_session_id FROM moc_instructions WHERE title = 'Spilled Castle'`).Scan(&id); err != nil {
		t.Fatalf("no MOC after mocupload upload: %v\n%s", err, out)
	}
	took := time.Since(began)
	var stored int64
	if err := h.db.QueryRow(h.ctx, `SELECT f.size_bytes FROM moc_files f JOIN moc_instructions m ON m.id = f.moc_id WHERE m.upload_session_id = $1`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	spilled := spills() - before
	if spilled <= 0 || stored != size {
		t.Fatalf("256 MiB through the Service in 32 MiB parts, 8 in flight: %v parts spilled, %d bytes in the catalog; want some spilled, %d", spilled, stored, size)
	}
	t.Logf("spill: mocupload sent 256 MiB through the Service in %s (%.0f MB/s), %v parts spilled to the emptyDir", took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, spilled)
}

// leaderDeletedMidFinalize deletes the leader while a finalize it serves is
// in flight (S3 slowed down to catch it there). Deleted gracefully, the
// leader finishes it before it exits (SIGTERM lets requests in flight
// finish); forced (SIGKILL after kubelet's minimum grace), the finalize dies
// with it and another replica finishes it once the lock is stale. Either way
// one MOC, a new leader, and the Deployment back to two Ready Pods.
func (h *harness) leaderDeletedMidFinalize(in install, pool *x509.CertPool, pods []corev1.Pod, force bool) []corev1.Pod {
	t := h.t
	t.Helper()
	leader := h.leader(in, pods)
	svc := h.client(in, pool, h.serviceIP(in))
	var paths []string
	for i := range 6 {
		p := filepath.Join(h.dir, fmt.Sprintf("page-%d.png", i))
		writeFile(t, p, 64<<10, byte('a'+i))
		paths = append(paths, p)
	}
	specs, err := upclient.SpecsFor(paths)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := svc.CreateSession(h.ctx, specs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upload(h.ctx, sess.SessionID, paths); err != nil {
		t.Fatal(err)
	}
	// Every S3 answer a second late: completing 6 files takes ≥ 6 s.
	if err := h.s3.AddToxic("slow", "latency", "downstream", `{"latency":1000}`); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.s3.RemoveToxic("slow") }()
	title := fmt.Sprintf("Leader Castle %v", force)
	direct := h.client(in, pool, leader.Status.PodIP)
	direct.MaxRetries = -1 // its Pod is going: no retry there
	type answer struct {
		moc *upclient.MOC
		err error
	}
	answers := make(chan answer, 1)
	began := time.Now()
	go func() {
		m, err := direct.Finalize(h.ctx, sess.SessionID, title, "", upclient.ReturnConflict)
		answers <- answer{m, err}
	}()
	waitFor(t, 30*time.Second, "the finalize in flight", func() (bool, string) {
		s := h.sessionStatus(sess.SessionID)
		return s == "finalizing", s
	})
	del := []string{"-n", in.ns, "delete", "pod", leader.Name, "--wait=false"}
	how := "deleted"
	if force {
		del = append(del, "--grace-period=0", "--force")
		how = "force-deleted"
	}
	h.kubectl(del...)
	var a answer
	select {
	case a = <-answers:
	case <-time.After(2 * time.Minute):
		t.Fatalf("no answer to the finalize within 2 min of deleting %s", leader.Name)
	}
	_ = h.s3.RemoveToxic("slow")
	finishedBy := leader.Name + " before it exited"
	switch {
	case a.err == nil && force:
		t.Fatalf("%s was force-deleted, yet its finalize answered %+v: the test did not catch the finalize in flight", leader.Name, a.moc)
	case a.err == nil:
	case !force:
		t.Fatalf("%s was deleted gracefully, yet its finalize failed: %v (SIGTERM must let it finish)", leader.Name, a.err)
	default:
		// The killed finalize's lock goes stale; the next finalize (or the
		// leader) finishes it.
		if a.moc, a.err = svc.Finalize(h.ctx, sess.SessionID, title, "", upclient.ReturnConflict); a.err != nil {
			t.Fatalf("finalize after %s was killed: %v", leader.Name, a.err)
		}
		finishedBy = "another replica after the lock went stale"
	}
	took := time.Since(began)
	if n := h.mocs(sess.SessionID); n != 1 || a.moc == nil || a.moc.Slug == "" {
		t.Fatalf("session %s: %d MOCs, answer %+v; want exactly one", sess.SessionID, n, a.moc)
	}
	next := h.readyPods(in, 2, []corev1.Pod{leader}, 3*time.Minute)
	newLeader := h.leader(in, next)
	t.Logf("leader %s %s mid-finalize: finished by %s in %s, 1 MOC (%s); leader now %s; Pods %s, no restarts",
		leader.Name, how, finishedBy, took.Round(100*time.Millisecond), a.moc.Slug, newLeader.Name, names(next))
	return next
}

// rolloutDuringUploads keeps four tenants uploading through the Service while
// change rolls the Deployment: every upload succeeds, each is one MOC, the
// new Pods replace the old with no restart.
func (h *harness) rolloutDuringUploads(in install, pool *x509.CertPool, pods []corev1.Pod, what string, change func()) {
	t := h.t
	t.Helper()
	var files []string
	for i := range 4 {
		p := filepath.Join(h.dir, fmt.Sprintf("rolling-%d.pdf", i))
		writeFile(t, p, 24<<20+i*4096, byte('0'+i))
		files = append(files, p)
	}
	var clients []*upclient.Client
	for _, tok := range h.tenants {
		clients = append(clients, h.clientAs(tok, in, pool, h.serviceIP(in)))
	}
	stop := make(chan struct{})
	run := runUploads(h.ctx, what, clients, files, stop)
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			run.wait()
		}
	}()
	waitFor(t, time.Minute, "uploads under way", func() (bool, string) { return run.count() >= 2, "" })
	began := time.Now()
	change()
	h.kubectl("-n", in.ns, "rollout", "status", "deployment/"+in.deployment, "--timeout=4m")
	next := h.readyPods(in, 2, pods, 3*time.Minute)
	rolled := time.Since(began)
	// A few more on the new Pods alone.
	after := run.count()
	waitFor(t, time.Minute, "uploads after the rollout", func() (bool, string) { return run.count() >= after+4, "" })
	close(stop)
	stopped = true
	ok, failures := run.wait()
	for _, err := range failures {
		t.Errorf("%s: an upload failed: %v", what, err)
	}
	for _, id := range ok {
		if n := h.mocs(id); n != 1 {
			t.Errorf("%s: session %s has %d MOCs, want 1", what, id, n)
		}
	}
	t.Logf("%s during uploads: rolled in %s; %d uploads of 24 MiB by 4 tenants, %d failed, %d MOCs; Pods %s → %s, no restarts",
		what, rolled.Round(time.Second), len(ok)+len(failures), len(failures), len(ok), names(pods), names(next))
}

// helm runs the pinned Helm against this cluster from the repository.
func (h *harness) helm(args ...string) {
	h.t.Helper()
	bins, _ := filepath.Glob(filepath.Join(h.root, "bin", "helm-*"))
	if len(bins) == 0 {
		h.t.Fatal("helm not in bin/ (make tools)")
	}
	cmd := exec.CommandContext(h.ctx, bins[0], append(args, "--kubeconfig", h.st.Kubeconfig)...) //nolint:gosec // the pinned helm
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeFile(t *testing.T, path string, size int, fill byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{fill}, size), 0o600); err != nil {
		t.Fatal(err)
	}
}

// buildImages builds the operator's image (make image) and the pause image.
func buildImages(t *testing.T, root, dir string) []string {
	t.Helper()
	operator, pause := filepath.Join(dir, "operator.tar"), filepath.Join(dir, "pause.tar")
	run := func(cmd *exec.Cmd) {
		t.Helper()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	mk := exec.Command("make", "image", "IMG="+image, "IMAGE_ARCHIVE="+operator)
	mk.Dir = root
	run(mk)
	pauseBin := filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-o", pauseBin, "./pause")
	build.Dir, build.Env = filepath.Join(root, "hack", "image"), append(os.Environ(), "CGO_ENABLED=0")
	run(build)
	img := exec.Command("go", "run", ".", "-binary", pauseBin, "-name", "pause", "-ref", pauseRef, "-out", pause)
	img.Dir = filepath.Join(root, "hack", "image")
	run(img)
	return []string{pause, operator}
}

func ready(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waiting(p corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil {
			return s.State.Waiting.Reason + ": " + s.State.Waiting.Message
		}
	}
	return ""
}

func hostPort(t *testing.T, url string) string {
	t.Helper()
	s := url
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, "/?"); i >= 0 {
		s = s[:i]
	}
	if !strings.Contains(s, ":") {
		t.Fatalf("no port in %s", url)
	}
	return s
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
