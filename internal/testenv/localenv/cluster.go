package localenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"golang.org/x/sys/unix"
)

// Cluster is a single-node Kubernetes cluster on this machine: the control
// plane of Kube (etcd, kube-apiserver) with kube-controller-manager and
// kube-scheduler beside it, and a node — containerd, runc, Debian's CNI
// plugins, kubelet and kube-proxy — inside a network namespace of its own,
// where the Pods get their addresses and Services their cluster IPs. Everything is built or installed here; no image is
// pulled (the pause image and the operator's come from OCI archives).
type Cluster struct {
	Kube *Kube
	NS   *NetNS
	Dir  string
	// NodeIP is the node's address inside the namespace; Pods reach the API
	// server (APIServerPort) and whatever Forward adds there.
	NodeIP        string
	APIServerPort int

	procs    []*Process // in start order
	forwards []func()
	socket   string // containerd's
}

// ClusterOptions are what StartCluster needs besides Kube.
type ClusterOptions struct {
	Dir    string   // state of containerd and kubelet, logs
	Images []string // OCI archives imported into containerd, the pause image first
	Pause  string   // the pause image's name
}

const (
	clusterNodeCIDR = "10.250.0.1/24"
	clusterPodCIDR  = "10.88.0.0/16"
	// apiServerName is the name envtest's serving certificate holds.
	apiServerName = "localhost"
)

// StartCluster starts the rest of a cluster around k. Stop removes all of it.
func StartCluster(ctx context.Context, k *Kube, o ClusterOptions) (*Cluster, error) {
	assets, err := K8sAssets()
	if err != nil {
		return nil, err
	}
	for _, bin := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not built (BUILD_CLUSTER=1 hack/build-k8s.sh, or make test-cluster): %w", bin, err)
		}
	}
	for _, bin := range []string{"containerd", "runc", "ctr", "nsenter", "ip", "iptables", "conntrack"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s missing (hack/ensure-services.sh installs Debian's containerd, runc, CNI plugins, iptables and conntrack): %w", bin, err)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, err
	}
	removeStaleNetNS()
	ns, err := NewNetNS(RandomName("uo-node"), clusterNodeCIDR)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Kube: k, NS: ns, Dir: o.Dir, NodeIP: strings.Split(clusterNodeCIDR, "/")[0], APIServerPort: 6443}
	if err := c.startAll(ctx, assets, o); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startAll(ctx context.Context, assets string, o ClusterOptions) error {
	k := c.Kube

	// The API server, reachable from the node and its Pods at NodeIP:6443.
	if err := c.Forward(c.APIServerPort, k.Config.Host); err != nil {
		return err
	}
	admin, err := k.AdminKubeconfig()
	if err != nil {
		return err
	}
	adminPath := filepath.Join(o.Dir, "admin.kubeconfig")
	if err := os.WriteFile(adminPath, admin, 0o600); err != nil {
		return err
	}
	nodeKubeconfig, err := retarget(admin, fmt.Sprintf("https://127.0.0.1:%d", c.APIServerPort))
	if err != nil {
		return err
	}
	nodePath := filepath.Join(o.Dir, "node.kubeconfig")
	if err := os.WriteFile(nodePath, nodeKubeconfig, 0o600); err != nil {
		return err
	}
	caPath := filepath.Join(o.Dir, "ca.crt")
	if err := os.WriteFile(caPath, k.Config.CAData, 0o600); err != nil {
		return err
	}

	if err := c.start("kube-controller-manager", nil, filepath.Join(assets, "kube-controller-manager"),
		"--kubeconfig="+adminPath, "--root-ca-file="+caPath, "--leader-elect=false", "--secure-port=0",
		"--controllers=*,-serviceaccount-token,-nodeipam", "--use-service-account-credentials=false"); err != nil {
		return err
	}
	if err := c.start("kube-scheduler", nil, filepath.Join(assets, "kube-scheduler"),
		"--kubeconfig="+adminPath, "--leader-elect=false", "--secure-port=0", "-v=3"); err != nil {
		return err
	}
	if err := c.startNode(ctx, assets, nodePath, o); err != nil {
		return err
	}
	if err := c.waitNodeReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	if err := c.startProxy(assets, nodePath); err != nil {
		return err
	}
	return c.setEphemeralStorage(ctx)
}

// startProxy runs kube-proxy in the node's namespace, so Services' cluster
// IPs route there to Ready endpoints as in any cluster (iptables mode, the
// default). masqueradeAll: the Pods share one bridge without br_netfilter,
// so a reply from a Pod must go back through the node's conntrack.
// conntrack.maxPerCore 0 leaves the machine's table size alone (a sysctl
// outside the namespace).
func (c *Cluster) startProxy(assets, kubeconfig string) error {
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
clusterCIDR: %q
hostnameOverride: node-0
iptables:
  masqueradeAll: true
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
`, kubeconfig, clusterPodCIDR)
	path := filepath.Join(c.Dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	return c.start("kube-proxy", c.NS, filepath.Join(assets, "kube-proxy"), "--config="+path)
}

// setEphemeralStorage gives the node the ephemeral-storage capacity kubelet
// cannot report here: cAdvisor finds no filesystem information for this
// machine's disk ("cannot find filesystem info for device /dev/vda"), so the
// node has none and no Pod requesting any (the operator's spill emptyDir)
// would be scheduled. The figure is the free space of the node's directory,
// measured with statfs; kubelet keeps a capacity it does not manage itself.
func (c *Cluster) setEphemeralStorage(ctx context.Context) error {
	var fs unix.Statfs_t
	if err := unix.Statfs(c.Dir, &fs); err != nil {
		return err
	}
	free := int64(fs.Bavail) * fs.Bsize //nolint:gosec // a disk's free bytes fit an int64
	cs, err := kubernetes.NewForConfig(c.Kube.Config)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"status":{"capacity":{"ephemeral-storage":"%d"},"allocatable":{"ephemeral-storage":"%d"}}}`, free, free)
	_, err = cs.CoreV1().Nodes().Patch(ctx, "node-0", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// retarget rewrites a kubeconfig's server, keeping the name the API server's
// certificate holds.
func retarget(kubeconfig []byte, server string) ([]byte, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, err
	}
	for _, cl := range cfg.Clusters {
		cl.Server = server
		cl.TLSServerName = apiServerName
	}
	return clientcmd.Write(*cfg)
}

// PodKubeconfig is a kubeconfig for a Pod of this cluster: the API server at
// the node's address, and the Pod's own ServiceAccount token (the projected
// one kubelet renews).
func (c *Cluster) PodKubeconfig() ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["node"] = &clientcmdapi.Cluster{Server: fmt.Sprintf("https://%s:%d", c.NodeIP, c.APIServerPort),
		CertificateAuthorityData: c.Kube.Config.CAData, TLSServerName: apiServerName}
	cfg.AuthInfos["pod"] = &clientcmdapi.AuthInfo{TokenFile: "/var/run/secrets/kubernetes.io/serviceaccount/token"} //nolint:gosec // G101: a path, not a credential
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "node", AuthInfo: "pod"}
	cfg.CurrentContext = "pod"
	return clientcmd.Write(*cfg)
}

// Forward makes target (host:port, or a URL's host) reachable from the node
// and its Pods at NodeIP:port.
func (c *Cluster) Forward(port int, target string) error {
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		target = u.Host
	}
	stop, err := c.NS.Forward(fmt.Sprintf("0.0.0.0:%d", port), target)
	if err != nil {
		return fmt.Errorf("forward %d to %s: %w", port, target, err)
	}
	c.forwards = append(c.forwards, stop)
	return nil
}

func (c *Cluster) startNode(ctx context.Context, assets, kubeconfig string, o ClusterOptions) error {
	dir := o.Dir
	c.socket = filepath.Join(dir, "containerd", "containerd.sock")
	cniDir := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniDir, 0o750); err != nil {
		return err
	}
	conflist := []byte(`{"cniVersion":"1.0.0","name":"pods","plugins":[` +
		`{"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,"ipam":{"type":"host-local","dataDir":"` + filepath.Join(dir, "ipam") + `","ranges":[[{"subnet":"` + clusterPodCIDR + `"}]],"routes":[{"dst":"0.0.0.0/0"}]}},` +
		`{"type":"portmap","capabilities":{"portMappings":true}},{"type":"loopback"}]}`)
	if err := os.WriteFile(filepath.Join(cniDir, "10-pods.conflist"), conflist, 0o600); err != nil {
		return err
	}
	// restrict_oom_score_adj: this machine's sandbox refuses to lower a
	// process's OOM score (runc: "failed to update /proc/self/oom_score_adj:
	// Permission denied"), which runc does for every Pod sandbox otherwise.
	containerdConfig := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory, not the machine's
  # /var/run/netns: Stop unmounts them with the rest.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(dir, "containerd", "root"), filepath.Join(dir, "containerd", "state"), c.socket, o.Pause, cniDir)
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(containerdConfig), 0o600); err != nil {
		return err
	}
	if err := c.start("containerd", c.NS, "containerd", "--config", cfgPath); err != nil {
		return err
	}
	if err := waitFile(ctx, c.socket, 30*time.Second); err != nil {
		return err
	}
	for _, img := range o.Images {
		if out, err := exec.CommandContext(ctx, "ctr", "--address", c.socket, "-n", "k8s.io", "images", "import", img).CombinedOutput(); err != nil { //nolint:gosec // our own archives
			return fmt.Errorf("import %s: %w: %s", img, err, out)
		}
	}
	// failCgroupV1: this machine has cgroup v1 only; kubelet refuses it by
	// default since 1.35. containerd 1.6 lacks the RuntimeConfig call, so the
	// cgroup driver comes from here (kubelet logs that it falls back).
	kubeletConfig := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupsPerQOS: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
readOnlyPort: 0
podLogsDir: %s
resolvConf: ""
serializeImagePulls: false
evictionHard: {}
`, c.socket, filepath.Join(dir, "pod-logs"))
	kcfg := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(kubeletConfig), 0o600); err != nil {
		return err
	}
	return c.start("kubelet", c.NS, filepath.Join(assets, "kubelet"), "--config="+kcfg, "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(dir, "kubelet"), "--hostname-override=node-0", "--node-ip="+c.NodeIP)
}

// start runs a component (in ns when given) with its log in Dir.
func (c *Cluster) start(name string, ns *NetNS, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	if ns != nil {
		args = append([]string{"--net=" + ns.Path, "--", bin}, args...)
		bin = "nsenter"
	}
	p, err := StartProcess(bin, nil, logf, args...)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, p)
	return nil
}

func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(c.Kube.Config))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		node, err := cs.CoreV1().Nodes().Get(ctx, "node-0", metav1.GetOptions{})
		if err == nil {
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					if cond.Status == corev1.ConditionTrue {
						return nil
					}
					last = cond.Message
				}
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("node-0 not Ready after %s: %s (logs in %s)", timeout, last, c.Dir)
}

// Stop removes the node and its Pods (containerd's shims are daemons of their
// own and are killed by name), the components, the forwards and the namespace.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		_ = c.procs[i].Stop(10 * time.Second)
	}
	if c.Dir != "" {
		// Shims and the Pods' processes name the state directory on their
		// command line or live in its bundles.
		_ = exec.Command("pkill", "-KILL", "-f", filepath.Join(c.Dir, "containerd")).Run()
		killBundles(filepath.Join(c.Dir, "containerd", "state"))
		unmountUnder(c.Dir)
	}
	for _, stop := range c.forwards {
		stop()
	}
	if c.NS != nil {
		errs = append(errs, c.NS.Delete())
	}
	return errors.Join(errs...)
}

// killBundles kills the init process of every container whose bundle is
// under state (runc writes init.pid there).
func killBundles(state string) {
	pids, _ := filepath.Glob(filepath.Join(state, "io.containerd.runtime.v2.task", "*", "*", "init.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f) //nolint:gosec // our own state directory
		if err != nil {
			continue
		}
		_ = exec.Command("kill", "-KILL", strings.TrimSpace(string(b))).Run() //nolint:gosec // a pid runc wrote
	}
}

// unmountUnder lazily unmounts what containerd and kubelet mounted below dir
// (deepest first).
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", points[i]).Run() //nolint:gosec // mounts below our own directory
	}
}

// removeStaleNetNS deletes the namespaces of earlier runs that were killed
// before they could (RandomName puts the creating process's pid in the name).
func removeStaleNetNS() {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "uo-node_p") {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimPrefix(name, "uo-node_p"), "_")
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // its run is alive
		}
		_ = exec.Command("ip", "netns", "del", name).Run() //nolint:gosec // a name we gave
	}
}
