package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

// harness is one cluster with the services the operator needs, shared by the
// installs a test makes in it.
type harness struct {
	t    *testing.T
	ctx  context.Context
	root string
	dir  string
	st   *localenv.Stack
	c    *localenv.Cluster
	cs   kubernetes.Interface
	db   *pgx.Conn
	// s3 sits between the Pods and the S3 server, so a test can slow S3
	// down and catch a finalize in flight.
	s3 *faultproxy.Proxy
	// uploader is a token of team-a/builder for the upload API; tenants
	// are tokens of four more tenants' ServiceAccounts (each its own user,
	// so per-user rate limits do not stop a test's uploaders).
	uploader string
	tenants  []string
}

// install is one installation of the operator: where it runs and what it
// named its objects.
type install struct {
	ns, deployment, apiService, metricsService, caConfigMap string
}

const (
	selector  = "app.kubernetes.io/name=upload-operator"
	leaseName = "upload-operator.uploads.mocs.dev"
)

func startHarness(ctx context.Context, t *testing.T) *harness {
	t.Helper()
	root, err := localenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, root: root, dir: t.TempDir()}
	images := buildImages(t, root, h.dir)
	h.st, err = localenv.StartStack(ctx, localenv.StackOptions{Dir: filepath.Join(h.dir, "stack"), ServiceAccountAdmission: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.st.Stop() })
	h.c, err = localenv.StartCluster(ctx, h.st.Kube, localenv.ClusterOptions{Dir: filepath.Join(h.dir, "node"), Images: images, Pause: pauseRef})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"kubelet", "containerd", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
				b, _ := os.ReadFile(filepath.Join(h.dir, "node", name+".log"))
				t.Logf("%s log (tail):\n%s", name, tail(string(b), 3000))
			}
			h.podLogs()
		}
		if err := h.c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	// PostgreSQL, Redis and S3 stay where the suite runs them, on this
	// machine's loopback; the Pods reach them at the node's address, S3
	// through a proxy the test can slow down.
	fp := faultproxy.New()
	t.Cleanup(fp.Close)
	if h.s3, err = fp.Add("s3", hostPort(t, h.st.S3.Endpoint)); err != nil {
		t.Fatal(err)
	}
	for target, port := range map[string]int{hostPort(t, h.st.DatabaseURL): 5432, hostPort(t, h.st.RedisURL): 6379, h.s3.Addr: 7070} {
		if err := h.c.Forward(port, target); err != nil {
			t.Fatal(err)
		}
	}
	if h.cs, err = kubernetes.NewForConfig(h.st.Kube.Config); err != nil {
		t.Fatal(err)
	}
	if h.db, err = pgx.Connect(ctx, h.st.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.db.Close(context.WithoutCancel(ctx)) }) // ctx ends before cleanups run
	for i, team := range []string{"team-a", "team-b", "team-c", "team-d", "team-e"} {
		h.kubectl("create", "namespace", team)
		if _, err := h.cs.CoreV1().ServiceAccounts(team).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tok := h.token(team, "builder", []string{config.DefaultAudience})
		if i == 0 {
			h.uploader = tok
		} else {
			h.tenants = append(h.tenants, tok)
		}
	}
	return h
}

func (h *harness) kubectl(args ...string) string {
	h.t.Helper()
	out, err := exec.CommandContext(h.ctx, "kubectl", append([]string{"--kubeconfig", h.st.Kubeconfig}, args...)...).CombinedOutput() //nolint:gosec // the test's own commands
	if err != nil {
		h.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// make runs a make target of the repository against this cluster.
func (h *harness) make(args ...string) {
	h.t.Helper()
	cmd := exec.CommandContext(h.ctx, "make", append(args, "KUBECTL=kubectl --kubeconfig "+h.st.Kubeconfig)...) //nolint:gosec // the test's own targets
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// envSecret creates the Secret a user creates before installing
// (docs/operations.md) with this cluster's addresses, and the kubeconfig the
// Pods use: the API server at the node's address (envtest's serving
// certificate does not name the kubernetes Service's cluster IP).
// STALE_LOCK_AFTER is shortened so a takeover fits in the test.
func (h *harness) envSecret(ns, name string) {
	h.t.Helper()
	podKubeconfig, err := h.c.PodKubeconfig()
	if err != nil {
		h.t.Fatal(err)
	}
	st, node := h.st, h.c.NodeIP
	env := map[string]string{
		"DATABASE_URL":          strings.Replace(st.DatabaseURL, hostPort(h.t, st.DatabaseURL), node+":5432", 1),
		"REDIS_URL":             strings.Replace(st.RedisURL, hostPort(h.t, st.RedisURL), node+":6379", 1),
		"REDIS_KEY_PREFIX":      st.RedisKeyPrefix,
		"S3_ENDPOINT":           "http://" + node + ":7070",
		"S3_BUCKET":             st.S3.Bucket,
		"AWS_ACCESS_KEY_ID":     st.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY": st.S3.SecretKey,
		"KUBECONFIG":            "/var/run/secrets/upload-operator-env/kubeconfig",
		"STALE_LOCK_AFTER":      staleLockAfter.String(),
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		StringData: env, Data: map[string][]byte{"kubeconfig": podKubeconfig}}
	if _, err := h.cs.CoreV1().Secrets(ns).Create(h.ctx, secret, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

const staleLockAfter = 15 * time.Second

// readyPods waits for want Ready Pods of in that none of old is among (and no
// other Pod besides them), and returns them.
func (h *harness) readyPods(in install, want int, old []corev1.Pod, timeout time.Duration) []corev1.Pod {
	h.t.Helper()
	gone := map[string]bool{}
	for _, p := range old {
		gone[p.Name] = true
	}
	var pods []corev1.Pod
	waitFor(h.t, timeout, fmt.Sprintf("%d Ready replicas in %s", want, in.ns), func() (bool, string) {
		list, err := h.cs.CoreV1().Pods(in.ns).List(h.ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error()
		}
		pods = nil
		var states []string
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && ready(p) && !gone[p.Name] {
				pods = append(pods, p)
			}
			states = append(states, p.Name+" "+string(p.Status.Phase)+" "+waiting(p))
		}
		return len(pods) == want && len(list.Items) == want, strings.Join(states, "; ")
	})
	for _, p := range pods {
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				h.t.Errorf("%s restarted %d times", p.Name, s.RestartCount)
			}
		}
	}
	return pods
}

// leader waits for the Lease to name one of pods and returns that Pod.
func (h *harness) leader(in install, pods []corev1.Pod) corev1.Pod {
	h.t.Helper()
	var found corev1.Pod
	waitFor(h.t, time.Minute, "a leader among "+names(pods), func() (bool, string) {
		l, err := h.cs.CoordinationV1().Leases(in.ns).Get(h.ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if l.Spec.HolderIdentity == nil {
			return false, "no holder"
		}
		for _, p := range pods {
			if strings.HasPrefix(*l.Spec.HolderIdentity, p.Name+"_") {
				found = p
				return true, ""
			}
		}
		return false, *l.Spec.HolderIdentity
	})
	return found
}

// caPool is the CA the operator published in its ConfigMap; it is also
// written to caFile(in) for mocupload's --ca-file.
func (h *harness) caPool(in install) *x509.CertPool {
	h.t.Helper()
	var caPEM string
	waitFor(h.t, time.Minute, "the published CA", func() (bool, string) {
		cm, err := h.cs.CoreV1().ConfigMaps(in.ns).Get(h.ctx, in.caConfigMap, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		caPEM = cm.Data["ca.crt"]
		return caPEM != "", ""
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		h.t.Fatalf("no certificate in the published CA: %q", caPEM)
	}
	if err := os.WriteFile(h.caFile(in), []byte(caPEM), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return pool
}

func (h *harness) caFile(in install) string { return filepath.Join(h.dir, "ca-"+in.ns+".crt") }

// scrapeClient reaches the Pods' /metrics verifying the metrics Service's name.
func (h *harness) scrapeClient(in install, pool *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: h.c.NS.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: in.metricsService + "." + in.ns + ".svc", MinVersion: tls.VersionTLS12}}}
}

// client is team-a's upload client for host (a Pod's address, or the
// Service's cluster IP that kube-proxy routes), verifying the Service's name.
func (h *harness) client(in install, pool *x509.CertPool, host string) *upclient.Client {
	return h.clientAs(h.uploader, in, pool, host)
}

func (h *harness) clientAs(token string, in install, pool *x509.CertPool, host string) *upclient.Client {
	c := upclient.New("https://"+host+":8082", upclient.StaticToken(token))
	c.HTTP = &http.Client{Transport: &http.Transport{DialContext: h.c.NS.DialContext, MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: in.apiService + "." + in.ns + ".svc", MinVersion: tls.VersionTLS12}}}
	return c
}

// serviceIP is the upload API Service's cluster IP.
func (h *harness) serviceIP(in install) string {
	h.t.Helper()
	svc, err := h.cs.CoreV1().Services(in.ns).Get(h.ctx, in.apiService, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// mocs counts the catalog rows of a session.
func (h *harness) mocs(sessionID string) int {
	h.t.Helper()
	var n int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, sessionID).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// sessionStatus is the session's status row in PostgreSQL.
func (h *harness) sessionStatus(sessionID string) string {
	var s string
	_ = h.db.QueryRow(h.ctx, `SELECT status FROM upload_sessions WHERE id = $1`, sessionID).Scan(&s)
	return s
}

// metric sums a counter's samples on a Pod's /metrics, scraped with token.
func (h *harness) metric(in install, pool *x509.CertPool, pod corev1.Pod, token, name string) float64 {
	h.t.Helper()
	scrape := h.scrapeClient(in, pool)
	req, err := http.NewRequestWithContext(h.ctx, http.MethodGet, "https://"+pod.Status.PodIP+":8080/metrics", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := scrape.Do(req)
	if err != nil {
		h.t.Fatalf("scrape %s: %v", pod.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("scrape %s: %d", pod.Name, resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			h.t.Fatalf("%s: %q", name, l)
		}
		sum += v
	}
	return sum
}

// token is a token of the ServiceAccount ns/name (audiences nil: the API
// server's, as Prometheus mounts).
func (h *harness) token(ns, name string, audiences []string) string {
	h.t.Helper()
	tr, err := h.cs.CoreV1().ServiceAccounts(ns).CreateToken(h.ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return tr.Status.Token
}

// podLogs prints the tail of every container log kubelet wrote (no
// kube-proxy path to kubelet's log endpoint is needed for these).
func (h *harness) podLogs() {
	files, _ := filepath.Glob(filepath.Join(h.dir, "node", "pod-logs", "*", "*", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f) //nolint:gosec // our own directory
		h.t.Logf("%s (tail):\n%s", strings.TrimPrefix(f, h.dir), tail(string(b), 2000))
	}
}

// uploadRun is uploaders working through a client until told to stop.
type uploadRun struct {
	mu       sync.Mutex
	ok       []string // session ids
	failures []error
	done     chan struct{}
}

// runUploads starts one uploader per file, each with its own client (a
// tenant), uploading its file as a new MOC again and again until stop is
// closed. No t.Fatal here: results come
// back to the test's goroutine through wait.
func runUploads(ctx context.Context, what string, clients []*upclient.Client, files []string, stop <-chan struct{}) *uploadRun {
	r := &uploadRun{done: make(chan struct{})}
	var wg sync.WaitGroup
	for i, file := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id, moc, err := clients[i].UploadFiles(ctx, fmt.Sprintf("%s castle %d", what, n), "", []string{file}, upclient.ReturnConflict)
				r.mu.Lock()
				if err != nil || moc == nil {
					r.failures = append(r.failures, fmt.Errorf("session %s: %w", id, err))
				} else {
					r.ok = append(r.ok, id)
				}
				r.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// wait waits for the uploaders to stop and returns what they did.
func (r *uploadRun) wait() (ok []string, failures []error) {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.failures
}

func names(pods []corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, p.Name)
	}
	return strings.Join(s, ", ")
}

// count is how many uploads have finished so far.
func (r *uploadRun) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ok) + len(r.failures)
}

// mocupload runs the CLI as a user in the cluster would: inside the node's
// network namespace, with the upload Service's name resolving to its
// cluster IP (a private mount namespace's /etc/hosts: the node has no DNS),
// verifying the certificate with the CA file the operator published (caPool
// must have run for in).
func (h *harness) mocupload(in install, token string, args ...string) string {
	h.t.Helper()
	bin := h.mocuploadBin()
	host := in.apiService + "." + in.ns + ".svc"
	hosts := filepath.Join(h.dir, "hosts-"+in.ns)
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"+h.serviceIP(in)+" "+host+"\n"), 0o600); err != nil {
		h.t.Fatal(err)
	}
	ca := h.caFile(in) // written by caPool
	script := `mount --bind "$1" /etc/hosts && shift && exec nsenter --net="$NODE_NETNS" -- "$@"`
	argv := append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", hosts, bin,
		"--api", "https://" + host + ":8082", "--ca-file", ca}, args...)
	cmd := exec.CommandContext(h.ctx, "unshare", argv...) //nolint:gosec // our own CLI and files
	cmd.Env = append(os.Environ(), "NODE_NETNS="+h.c.NS.Path, "MOCUPLOAD_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		h.t.Fatalf("mocupload %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mocuploadBin builds the CLI once.
func (h *harness) mocuploadBin() string {
	h.t.Helper()
	bin := filepath.Join(h.dir, "mocupload")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	build := exec.CommandContext(h.ctx, "go", "build", "-o", bin, "./cmd/mocupload") //nolint:gosec // our own CLI
	build.Dir = h.root
	if out, err := build.CombinedOutput(); err != nil {
		h.t.Fatalf("build mocupload: %v\n%s", err, out)
	}
	return bin
}
