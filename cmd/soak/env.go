package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

// namespace holds every resource of the soak.
const namespace = "soak"

// env is the soak's own environment: services, proxies, replicas, users.
type env struct {
	st       *localenv.Stack
	dir      string
	bin      string
	k8s      ctrlclient.Client
	proxies  *faultproxy.Server
	replicas []*replica
	users    []user
	settings settings
	stopped  bool
}

// settings are the replicas' configuration, chosen so that every fault
// resolves within the soak: a short TTL so abandoned sessions expire, a short
// stale-lock time so a killed finalizer's lock is taken over, a small part
// buffer budget so the memory bound is tested.
type settings struct {
	SessionTTL   time.Duration
	StaleLock    time.Duration
	BufferBudget int64
	Lease        time.Duration
}

type user struct {
	name, token string
}

// replica is one manager process with its own proxies to S3, PostgreSQL and
// Redis, restarted by the fault scheduler.
type replica struct {
	name              string
	url, metrics      string
	s3, pg, redis     *faultproxy.Proxy
	env               map[string]string
	log               *os.File
	mu                sync.Mutex
	proc              *localenv.Process
	runs              int           // incarnations started
	skew              time.Duration // clock skew of the current incarnation
	peakRSS           map[string]int64
	peakMix           map[string]string // what the highest RSS sample was made of
	finalizesInFlight int
	finalizeMu        sync.Mutex
}

func startEnv(ctx context.Context, dir string, s settings) (*env, error) {
	e := &env{dir: dir, settings: s}
	say("building the manager (failpoints build: the skewed clock is a test-build feature)")
	var err error
	if e.bin, err = localenv.BuildManager(ctx, dir, localenv.Build{Tags: []string{"failpoints"}}); err != nil {
		return nil, err
	}
	say("starting control plane, versitygw, database")
	if e.st, err = localenv.StartStack(ctx, localenv.StackOptions{Dir: dir, S3LogFile: filepath.Join(dir, "versitygw.log")}); err != nil {
		return nil, err
	}
	scheme := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = uploadsv1.AddToScheme(scheme)
	if e.k8s, err = ctrlclient.New(e.st.Kube.Config, ctrlclient.Options{Scheme: scheme}); err != nil {
		return nil, e.fail(err)
	}
	if err := e.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return nil, e.fail(err)
	}
	if err := e.createUsers(ctx, 3); err != nil {
		return nil, e.fail(err)
	}
	e.proxies = faultproxy.New()
	for i := range 3 {
		r, err := e.newReplica(i)
		if err != nil {
			return nil, e.fail(err)
		}
		e.replicas = append(e.replicas, r)
		if err := r.start(ctx, e.bin, 0); err != nil {
			return nil, e.fail(err)
		}
	}
	return e, nil
}

func (e *env) fail(err error) error {
	_ = e.stop()
	return err
}

// stop shuts every replica down (SIGTERM, with a Pod's grace) and the
// services, and returns how each replica's last incarnation ended.
func (e *env) stop() []soakcheck.RunEnd {
	if e.stopped {
		return nil
	}
	e.stopped = true
	var ends []soakcheck.RunEnd
	for _, r := range e.replicas {
		run := r.run()
		if err := r.stop(syscall.SIGTERM); err != nil {
			ends = append(ends, soakcheck.RunEnd{Run: run, Err: err})
		}
	}
	if e.proxies != nil {
		e.proxies.Close()
	}
	if e.st != nil {
		if err := e.st.Stop(); err != nil {
			say("stopping the services: %v", err)
		}
	}
	return ends
}

// createUsers makes ServiceAccounts whose audience-bound tokens the clients use.
func (e *env) createUsers(ctx context.Context, n int) error {
	cs, err := kubernetes.NewForConfig(e.st.Kube.Config)
	if err != nil {
		return err
	}
	for i := range n {
		name, token, err := localenv.ServiceAccountToken(ctx, cs, namespace, fmt.Sprintf("builder-%d", i), config.DefaultAudience, 6*time.Hour)
		if err != nil {
			return err
		}
		e.users = append(e.users, user{name: name, token: token})
	}
	return nil
}

func (e *env) newReplica(i int) (*replica, error) {
	name := fmt.Sprintf("replica-%d", i)
	pgURL, err := url.Parse(e.st.DatabaseURL)
	if err != nil {
		return nil, err
	}
	redisURL, err := url.Parse(e.st.RedisURL)
	if err != nil {
		return nil, err
	}
	r := &replica{name: name, peakRSS: map[string]int64{}, peakMix: map[string]string{}}
	if r.s3, err = e.proxies.Add(name+"-s3", e.st.S3.Addr); err != nil {
		return nil, err
	}
	if r.pg, err = e.proxies.Add(name+"-pg", hostPort(pgURL, "5432")); err != nil {
		return nil, err
	}
	if r.redis, err = e.proxies.Add(name+"-redis", hostPort(redisURL, "6379")); err != nil {
		return nil, err
	}
	pgURL.Host, redisURL.Host = r.pg.Addr, r.redis.Addr
	addr, err := localenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := localenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	r.url, r.metrics = "http://"+addr, "http://"+maddr+"/metrics"
	r.env = e.st.ManagerEnv(addr)
	for k, v := range map[string]string{
		"DATABASE_URL": pgURL.String(), "REDIS_URL": redisURL.String(), "S3_ENDPOINT": "http://" + r.s3.Addr,
		"METRICS_ADDR": maddr, "METRICS_SECURE": "false",
		"LEADER_ELECTION": "true", "LEADER_ELECTION_NAMESPACE": namespace, "LEASE_DURATION": e.settings.Lease.String(),
		"WATCH_NAMESPACE": namespace, "SESSION_NAMESPACE": namespace,
		"SESSION_TTL": e.settings.SessionTTL.String(), "STALE_LOCK_AFTER": e.settings.StaleLock.String(),
		"RESYNC_INTERVAL": "2s", "EXPIRED_RETENTION": "1h",
		"PART_BUFFER_BUDGET_BYTES": strconv.FormatInt(e.settings.BufferBudget, 10), "SPILL_DIR": filepath.Join(e.dir, name+"-spill"),
		"FINALIZE_RATE_LIMIT": "100000/1m", "SESSION_CREATE_RATE_LIMIT": "100000/1m", "SESSION_CREATE_RATE_LIMIT_PER_TENANT": "1000000/1m", "MAX_ACTIVE_SESSIONS_PER_USER": "1000",
		// GETs are polled hard by the clients; their limit is tested elsewhere.
		"GET_RATE_LIMIT": "1000000/1m",
		"LOG_LEVEL":      "info",
		// Short enough for a run to see the sweep: an activation step is
		// bounded by 2 × 10 s + 30 s; 75 s leaves room for 10 s of clock skew.
		"S3_CALL_TIMEOUT": "10s", "ORPHAN_UPLOAD_MIN_AGE": "75s", "ORPHAN_SWEEP_INTERVAL": "10s",
	} {
		r.env[k] = v
	}
	if r.log, err = os.Create(filepath.Join(e.dir, name+".log")); err != nil {
		return nil, err
	}
	return r, nil
}

func hostPort(u *url.URL, defPort string) string {
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = defPort
	}
	return net.JoinHostPort(host, port)
}

// start runs a new incarnation of the replica, its clock shifted by skew.
func (r *replica) start(ctx context.Context, bin string, skew time.Duration) error {
	r.mu.Lock()
	env := map[string]string{}
	for k, v := range r.env {
		env[k] = v
	}
	if skew != 0 {
		env["MOCUPLOAD_CLOCK_SKEW"] = skew.String()
	}
	r.runs++
	fmt.Fprintf(r.log, "\n=== soak: incarnation %d, clock skew %s, at %s\n", r.runs, skew, time.Now().UTC().Format(time.RFC3339Nano))
	p, err := localenv.StartProcess(bin, env, r.log)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	r.proc, r.skew = p, skew
	run := fmt.Sprintf("%s#%d", r.name, r.runs)
	r.mu.Unlock()
	go r.watchRSS(context.WithoutCancel(ctx), run, p)
	return p.WaitHTTP(ctx, r.url+"/healthz", 2*time.Minute)
}

// stop ends the current incarnation: SIGKILL (a crash) or SIGTERM (a
// rolling restart, with the grace a Pod gets). For SIGTERM it returns how
// the process ended: nil for a clean shutdown.
func (r *replica) stop(sig syscall.Signal) error {
	r.mu.Lock()
	p := r.proc
	r.proc = nil
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	if sig == syscall.SIGKILL {
		p.Kill()
		return nil
	}
	return p.Stop(40 * time.Second)
}

// run names the current incarnation, e.g. replica-0#3.
func (r *replica) run() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%s#%d", r.name, r.runs)
}

// allRuns names every incarnation the replica had.
func (r *replica) allRuns() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, r.runs)
	for i := range out {
		out[i] = fmt.Sprintf("%s#%d", r.name, i+1)
	}
	return out
}

func (r *replica) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc != nil
}

// exitedOnItsOwn reports an incarnation that exited without being stopped.
func (r *replica) exitedOnItsOwn() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return false
	}
	select {
	case <-r.proc.Done():
		return true
	default:
		return false
	}
}

// lostLease reports whether the current incarnation's output ends with
// controller-runtime's "leader election lost" exit.
func (r *replica) lostLease() bool {
	raw, err := os.ReadFile(r.log.Name())
	if err != nil {
		return false
	}
	out := string(raw)
	if i := strings.LastIndex(out, "=== soak: incarnation"); i >= 0 {
		out = out[i:]
	}
	return strings.Contains(out, "leader election lost") && !strings.Contains(out, "panic:")
}

// watchRSS samples the incarnation's RSS until it exits and keeps its peak
// (VmHWM) and, for the highest sample, what it was made of (anonymous and
// file-backed memory, the Go runtime's heap and stacks, goroutines): the
// soak's memory evidence. The last sample before a SIGKILL is at most 200 ms old.
func (r *replica) watchRSS(ctx context.Context, run string, p *localenv.Process) {
	path := fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var best int64
	for {
		if raw, err := os.ReadFile(path); err == nil {
			st := procStatus(string(raw))
			r.mu.Lock()
			r.peakRSS[run] = max(r.peakRSS[run], st["VmHWM:"])
			r.mu.Unlock()
			if now := st["RssAnon:"] + st["RssFile:"]; now > best {
				best = now
				m := r.runtimeMemory(ctx)
				r.mu.Lock()
				r.peakMix[run] = fmt.Sprintf("anon %d MiB, file %d MiB; Go heap in use %d MiB, stacks %d MiB, %d goroutines",
					st["RssAnon:"]>>20, st["RssFile:"]>>20, int64(m["go_memstats_heap_inuse_bytes"])>>20,
					int64(m["go_memstats_stack_inuse_bytes"])>>20, int64(m["go_goroutines"]))
				r.mu.Unlock()
			}
		}
		select {
		case <-p.Done():
			return
		case <-t.C:
		}
	}
}

// procStatus reads the kB fields of /proc/<pid>/status, in bytes.
func procStatus(raw string) map[string]int64 {
	out := map[string]int64{}
	for _, line := range strings.Split(raw, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			out[f[0]] = kb << 10
		}
	}
	return out
}

// runtimeMemory reads the Go runtime's gauges from the replica's metrics.
func (r *replica) runtimeMemory(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.metrics, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// leader reports whether this replica holds the leader lease, from
// controller-runtime's leader_election_master_status gauge.
func (r *replica) leader(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.metrics, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	buf := new(strings.Builder)
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return false
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, "leader_election_master_status{") && strings.HasSuffix(line, " 1") {
			return true
		}
	}
	return false
}

func (r *replica) finalizeStarted() {
	r.finalizeMu.Lock()
	r.finalizesInFlight++
	r.finalizeMu.Unlock()
}
func (r *replica) finalizeEnded() { r.finalizeMu.Lock(); r.finalizesInFlight--; r.finalizeMu.Unlock() }
func (r *replica) finalizing() bool {
	r.finalizeMu.Lock()
	defer r.finalizeMu.Unlock()
	return r.finalizesInFlight > 0
}
