// Package cluster runs the operator as users do: its image, built here, as
// Pods of `make deploy` on a single-node cluster whose kubelet, containerd and
// runc run them in a network namespace of the test's own
// (internal/localenv.Cluster).
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/localenv"
	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

const (
	ns       = "upload-operator-system"
	image    = "example.test/upload-operator:cluster-test"
	pauseRef = "example.test/pause:1"
	apiName  = "upload-operator-upload-api.upload-operator-system.svc"
)

// The operator deployed with `make deploy` of config/default (the image built
// by `make image`; a Secret with the addresses of PostgreSQL, Redis and S3;
// a kubeconfig naming the API server at the node's address) runs two
// replicas that kubelet finds Ready through their probes, elects one leader,
// publishes its CA, and takes an upload through a Pod's address over TLS
// verified against that CA.
func TestOperatorRunsAsPodsOfADeployment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a node needs root (network namespaces, containerd, runc)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := localenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	images := buildImages(t, root, dir)

	st, err := localenv.StartStack(ctx, localenv.StackOptions{Dir: filepath.Join(dir, "stack"), ServiceAccountAdmission: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Stop() })
	c, err := localenv.StartCluster(ctx, st.Kube, localenv.ClusterOptions{Dir: filepath.Join(dir, "node"), Images: images, Pause: pauseRef})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"kubelet", "containerd", "kube-controller-manager", "kube-scheduler"} {
				b, _ := os.ReadFile(filepath.Join(dir, "node", name+".log"))
				t.Logf("%s log (tail):\n%s", name, tail(string(b), 3000))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	// PostgreSQL, Redis and S3 stay where the suite runs them, on this
	// machine's loopback; the Pods reach them at the node's address.
	addrs := map[string]int{hostPort(t, st.DatabaseURL): 5432, hostPort(t, st.RedisURL): 6379, hostPort(t, st.S3.Endpoint): 7070}
	for target, port := range addrs {
		if err := c.Forward(port, target); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := kubernetes.NewForConfig(st.Kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", st.Kubeconfig}, args...)...).CombinedOutput() //nolint:gosec // the test's own commands
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// The Secrets a user creates before `make deploy` (docs/operations.md),
	// with this cluster's addresses.
	kubectl("create", "namespace", ns)
	podKubeconfig, err := c.PodKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	node := c.NodeIP
	env := map[string]string{
		"DATABASE_URL":          strings.Replace(st.DatabaseURL, hostPort(t, st.DatabaseURL), node+":5432", 1),
		"REDIS_URL":             strings.Replace(st.RedisURL, hostPort(t, st.RedisURL), node+":6379", 1),
		"REDIS_KEY_PREFIX":      st.RedisKeyPrefix,
		"S3_ENDPOINT":           "http://" + node + ":7070",
		"S3_BUCKET":             st.S3.Bucket,
		"AWS_ACCESS_KEY_ID":     st.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY": st.S3.SecretKey,
		// ctrl.GetConfig reads it first: the API server at the node's
		// address (no kube-proxy here for the kubernetes Service).
		"KUBECONFIG": "/var/run/secrets/upload-operator-env/kubeconfig",
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "upload-operator-env", Namespace: ns},
		StringData: env, Data: map[string][]byte{"kubeconfig": podKubeconfig}}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// make deploy, with the kubeconfig mounted where KUBECONFIG points.
	deploy := exec.CommandContext(ctx, "make", "deploy", "IMG="+image, "KUBECTL=kubectl --kubeconfig "+st.Kubeconfig)
	deploy.Dir = root
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	kubectl("-n", ns, "patch", "deployment", "upload-operator-controller-manager", "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/volumes/-","value":{"name":"env","secret":{"secretName":"upload-operator-env","items":[{"key":"kubeconfig","path":"kubeconfig"}]}}},`+
			`{"op":"add","path":"/spec/template/spec/containers/0/volumeMounts/-","value":{"name":"env","mountPath":"/var/run/secrets/upload-operator-env","readOnly":true}}]`)

	// Two replicas Ready through kubelet's readiness probes.
	var pods []corev1.Pod
	waitFor(t, 4*time.Minute, "2 Ready replicas", func() (bool, string) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=upload-operator"})
		if err != nil {
			return false, err.Error()
		}
		pods = nil
		var states []string
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && ready(p) {
				pods = append(pods, p)
			}
			states = append(states, p.Name+" "+string(p.Status.Phase)+" "+waiting(p))
		}
		return len(pods) == 2, strings.Join(states, "; ")
	})
	for _, p := range pods {
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("%s restarted %d times", p.Name, s.RestartCount)
			}
		}
	}

	// One leader, and it is one of them.
	waitFor(t, time.Minute, "a leader", func() (bool, string) {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, "upload-operator.uploads.mocs.dev", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return holderIsOneOf(l, pods), fmt.Sprint(l.Spec.HolderIdentity)
	})

	// The CA, published by the leader; an upload through a Pod's address,
	// verifying the certificate by the Service's name.
	var caPEM string
	waitFor(t, time.Minute, "the published CA", func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "upload-operator-ca", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		caPEM = cm.Data["ca.crt"]
		return caPEM != "", ""
	})
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("no certificate in the published CA: %q", caPEM)
	}
	uploader := uploaderToken(ctx, t, cs, kubectl)
	client := upclient.New("https://"+pods[0].Status.PodIP+":8082", upclient.StaticToken(uploader))
	client.HTTP = &http.Client{Transport: &http.Transport{DialContext: c.NS.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: apiName, MinVersion: tls.VersionTLS12}}}
	file := filepath.Join(dir, "instructions.pdf")
	if err := os.WriteFile(file, bytes.Repeat([]byte("%PDF-1.7 cluster "), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, moc, err := client.UploadFiles(ctx, "Cluster Castle", "", []string{file}, upclient.ReturnConflict)
	if err != nil || moc == nil || !moc.Created {
		t.Fatalf("upload through %s: %+v, %v", pods[0].Name, moc, err)
	}

	// Metrics over HTTPS, verified by the metrics Service's name, for a
	// ServiceAccount bound to config/rbac's metrics-reader role only.
	kubectl("create", "namespace", "monitoring")
	kubectl("-n", "monitoring", "create", "serviceaccount", "prometheus")
	kubectl("create", "clusterrolebinding", "prometheus-metrics", "--clusterrole=upload-operator-metrics-reader",
		"--serviceaccount=monitoring:prometheus")
	scrape := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: c.NS.DialContext,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "upload-operator-metrics." + ns + ".svc", MinVersion: tls.VersionTLS12}}}
	for _, tc := range []struct {
		sa     string
		status int
	}{{"monitoring/prometheus", http.StatusOK}, {"team-a/builder", http.StatusForbidden}} {
		nsName, name, _ := strings.Cut(tc.sa, "/")
		tok := token(ctx, t, cs, nsName, name, nil)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+pods[1].Status.PodIP+":8080/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := scrape.Do(req)
		if err != nil {
			t.Fatalf("scrape as %s: %v", tc.sa, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("scrape as %s = %d, want %d", tc.sa, resp.StatusCode, tc.status)
		}
	}
	t.Logf("Pods %s and %s Ready; MOC %s through %s; metrics served to the metrics reader only", pods[0].Name, pods[1].Name, moc.Slug, pods[0].Status.PodIP)

	// make undeploy removes everything it created, the Pods with the namespace.
	undeploy := exec.CommandContext(ctx, "make", "undeploy", "KUBECTL=kubectl --kubeconfig "+st.Kubeconfig)
	undeploy.Dir = root
	if out, err := undeploy.CombinedOutput(); err != nil {
		t.Fatalf("make undeploy: %v\n%s", err, out)
	}
	waitFor(t, 2*time.Minute, "the namespace and its Pods gone", func() (bool, string) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		list, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return false, fmt.Sprintf("namespace still there (%v), %d Pods", err, len(list.Items))
	})
	for _, obj := range []string{"clusterrole/upload-operator-manager-role", "crd/uploadsessions.uploads.mocs.dev"} {
		if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", st.Kubeconfig, "get", obj).CombinedOutput(); err == nil { //nolint:gosec // the test's own command
			t.Errorf("%s still there after make undeploy:\n%s", obj, out)
		}
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

// uploaderToken is a token of a tenant's ServiceAccount for the upload API.
func uploaderToken(ctx context.Context, t *testing.T, cs kubernetes.Interface, kubectl func(...string) string) string {
	t.Helper()
	kubectl("create", "namespace", "team-a")
	if _, err := cs.CoreV1().ServiceAccounts("team-a").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return token(ctx, t, cs, "team-a", "builder", []string{config.DefaultAudience})
}

// token is a token of the ServiceAccount ns/name (audiences nil: the API
// server's, as Prometheus mounts).
func token(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, audiences []string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
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

func holderIsOneOf(l *coordinationv1.Lease, pods []corev1.Pod) bool {
	if l.Spec.HolderIdentity == nil {
		return false
	}
	for _, p := range pods {
		if strings.HasPrefix(*l.Spec.HolderIdentity, p.Name+"_") {
			return true
		}
	}
	return false
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
