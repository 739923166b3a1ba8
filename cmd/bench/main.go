// Command bench is `make bench`: it starts its own services (as the tests do)
// and measures the operator against the direct-to-S3 limit, then rewrites
// docs/benchmarks.md and docs/benchmarks.png. See docs/benchmarks.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/ratelimit"
	"github.com/mocs-dev/upload-operator/internal/session"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/pkg/client"
)

var (
	quick    = flag.Bool("quick", false, "smaller data (for a smoke run), not for the document")
	totalMiB = flag.Int("total-mib", 1024, "bytes per throughput run, MiB")
	pprofOut = flag.String("pprof", "", "write a 5 s CPU profile of the operator during the 16 MiB × c4 run (with -c64: the 8 MiB × c64 run) to this file")
	conc64   = flag.Bool("c64", false, "throughput: only the 8 MiB × 64 configuration")
	render   = flag.Bool("render", false, "rewrite docs/benchmarks.md and the plot from the last full run's bin/bench-results.json, measuring nothing")
	only     = flag.String("only", "", "run only this part: throughput (a, b), finalize, reconcile, auth, kept (memory of finished resources), go (the Go benchmarks)")
)

type bench struct {
	ctx   context.Context
	st    *localenv.Stack
	bin   string
	dir   string
	token string
	owner string
	k8s   ctrlclient.Client
	// tls is the certificate the operator (and tusd) serve, as `make dev`
	// serves the upload API; httpClient trusts its CA.
	tls *localenv.TLS
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make bench:", err)
		os.Exit(1)
	}
}

func say(f string, a ...any) { fmt.Fprintf(os.Stderr, "==> "+f+"\n", a...) }

func run() error {
	ctx := context.Background()
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	saved := filepath.Join(root, "bin", "bench-results.json")
	if *render {
		raw, err := os.ReadFile(saved)
		if err != nil {
			return fmt.Errorf("no saved results (run make bench first): %w", err)
		}
		res := &results{}
		if err := json.Unmarshal(raw, res); err != nil {
			return err
		}
		return res.write(root)
	}
	dir, err := os.MkdirTemp("", "mocupload-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{ctx: ctx, dir: dir}
	if b.tls, err = localenv.NewTLS(filepath.Join(dir, "tls"), "127.0.0.1", "localhost"); err != nil {
		return err
	}
	if err := trustBenchCA(b.tls.CAFile); err != nil {
		return err
	}
	say("building the manager")
	if b.bin, err = localenv.BuildManager(ctx, dir, localenv.Build{}); err != nil {
		return err
	}
	say("starting control plane, versitygw, database")
	if b.st, err = localenv.StartStack(ctx, localenv.StackOptions{Dir: dir}); err != nil {
		return err
	}
	defer func() {
		if err := b.st.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping the services:", err)
		}
	}()
	if err := b.account(); err != nil {
		return err
	}
	scheme := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = uploadsv1.AddToScheme(scheme)
	if b.k8s, err = ctrlclient.New(b.st.Kube.Config, ctrlclient.Options{Scheme: scheme}); err != nil {
		return err
	}
	res := &results{}
	for _, part := range []struct {
		name string
		fn   func(*results) error
	}{{"throughput", b.throughput}, {"finalize", b.finalizeLatency}, {"reconcile", b.reconcileThroughput}, {"auth", b.authLatency}, {"kept", b.keptMemory}, {"go", b.goBenchmarks}} {
		if *only != "" && *only != part.name {
			continue
		}
		if err := part.fn(res); err != nil {
			return err
		}
	}
	res.Generated = time.Now().UTC()
	if *quick || *only != "" {
		say("partial run (-quick or -only): docs/benchmarks.md not rewritten")
		if *only != "" { // the document needs every part: print what was measured
			raw, err := json.MarshalIndent(res, "", "  ")
			if err != nil {
				return err
			}
			fmt.Println(string(raw))
			return nil
		}
		fmt.Println(res.markdown())
		return nil
	}
	if raw, err := json.Marshal(res); err == nil {
		_ = os.WriteFile(saved, raw, 0o600) // for -render
	}
	return res.write(root)
}

func (b *bench) account() error {
	cs, err := kubernetes.NewForConfig(b.st.Kube.Config)
	if err != nil {
		return err
	}
	b.owner, b.token, err = localenv.ServiceAccountToken(b.ctx, cs, "default", "bench", config.DefaultAudience, 2*time.Hour)
	return err
}

// manager runs a fresh manager process (fresh, so its peak RSS is its own).
type manager struct {
	url, metrics, log string
	proc              *localenv.Process
}

// manager runs the manager serving the upload API over TLS, as `make dev`
// does.
func (b *bench) manager(extra map[string]string) (*manager, error) {
	return b.startManager(extra, true)
}

// startManager runs the manager with the upload API over TLS or, for what TLS
// costs, plain HTTP.
func (b *bench) startManager(extra map[string]string, tls bool) (*manager, error) {
	addr, _ := localenv.FreeAddr()
	maddr, _ := localenv.FreeAddr()
	env := b.st.ManagerEnv(addr)
	env["METRICS_ADDR"] = maddr
	env["METRICS_SECURE"] = "false" // the benchmark reads counters on loopback
	env["LOG_LEVEL"] = "info"
	env["FINALIZE_RATE_LIMIT"] = "100000/1m"
	// Throughput sessions are never finalized: lift the per-user caps.
	env["MAX_ACTIVE_SESSIONS_PER_USER"] = "100000"
	env["MAX_PARTS_IN_FLIGHT_PER_USER"] = "100000"
	env["GET_RATE_LIMIT"] = "1000000/1m"
	env["SESSION_CREATE_RATE_LIMIT"] = "100000/1m"
	env["SESSION_CREATE_RATE_LIMIT_PER_TENANT"] = "1000000/1m"
	env["SPILL_DIR"] = filepath.Join(b.dir, "spill")
	if v := os.Getenv("BENCH_GOMEMLIMIT"); v != "" {
		env["GOMEMLIMIT"] = v
	}
	if v := os.Getenv("BENCH_TENANT_SHARE"); v != "" {
		// One tenant sends every part here: at the default 25 % its parts
		// beyond 64 MiB spill (docs/performance.md, item 13).
		env["PART_BUFFER_SHARE_PER_TENANT"] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	scheme := "http://"
	if tls {
		env["TLS_CERT_FILE"], env["TLS_KEY_FILE"] = b.tls.CertFile, b.tls.KeyFile
		scheme = "https://"
	}
	m := &manager{url: scheme + addr, metrics: "http://" + maddr + "/metrics", log: filepath.Join(b.dir, fmt.Sprintf("manager-%d.log", time.Now().UnixNano()))}
	f, err := os.Create(m.log)
	if err != nil {
		return nil, err
	}
	if m.proc, err = localenv.StartProcess(b.bin, env, f); err != nil {
		return nil, err
	}
	return m, m.proc.WaitHTTPWith(b.ctx, httpClient, m.url+"/healthz", time.Minute)
}

func (m *manager) stop() { _ = m.proc.Stop(20 * time.Second) }

// peakRSS is VmHWM of the process, in bytes.
func (m *manager) peakRSS() int64 { return m.status("VmHWM:") }

// rss is VmRSS of the process now, in bytes.
func (m *manager) rss() int64 { return m.status("VmRSS:") }

// status reads a kB field of /proc/PID/status.
func (m *manager) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.proc.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (b *bench) call(method, url string, body io.Reader, size int64, out any) (int, error) {
	req, _ := http.NewRequestWithContext(b.ctx, method, url, body)
	req.Header.Set("Authorization", "Bearer "+b.token)
	if size >= 0 && body != nil {
		req.ContentLength = size
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

type created struct {
	SessionID     string `json:"sessionId"`
	PartSizeBytes int64  `json:"partSizeBytes"`
	Files         []struct {
		FileID    string `json:"fileId"`
		PartCount int    `json:"partCount"`
		SizeBytes int64  `json:"sizeBytes"`
	} `json:"files"`
}

func (b *bench) createSession(api string, sizes []int64, partSize int64, transfer ...string) (*created, error) {
	var files []map[string]any
	for i, s := range sizes {
		files = append(files, map[string]any{"name": fmt.Sprintf("f%d.pdf", i), "contentType": "application/pdf", "sizeBytes": s})
	}
	return b.createSessionOf(api, files, partSize, transfer...)
}

// createSessionOf creates a session of files as the API takes them.
func (b *bench) createSessionOf(api string, files []map[string]any, partSize int64, transfer ...string) (*created, error) {
	req := map[string]any{"files": files}
	if partSize > 0 {
		req["partSizeBytes"] = partSize
	}
	if len(transfer) > 0 {
		req["transfer"] = transfer[0]
	}
	body, _ := json.Marshal(req)
	var c created
	_, err := b.call("POST", api+"/api/mocs/uploads/sessions", bytes.NewReader(body), int64(len(body)), &c)
	return &c, err
}

// parallel runs n jobs with the given concurrency.
func parallel(conc, n int, job func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := job(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

type tpRun struct {
	PartMiB, Concurrency int
	OperatorMBs          []float64
	// DirectMBs is UploadPart with the SDK's defaults (SigV4 over a SHA-256 of
	// the body); DirectUnsignedMBs with UNSIGNED-PAYLOAD, as the operator signs.
	// The ratio is taken against the faster of the two: the direct-to-S3 limit.
	DirectMBs, DirectUnsignedMBs []float64
	IdleRSS, PeakRSS             int64
	Waited, Spilled              int64 // parts, over all runs (the operator's metrics)
	// CPU seconds per run spent by each process: through the operator, and
	// direct with UNSIGNED-PAYLOAD.
	OperatorCPU, DirectCPU []cpuTimes
	// TusdMBs is the peer, tusd v2 with its S3 store (its CPU in Operator).
	TusdMBs []float64
	TusdCPU []cpuTimes
	// DirectModeMBs is a direct session: a part URL call per part, bytes to S3.
	DirectModeMBs []float64
	DirectModeCPU []cpuTimes
	// PresignedMBs is the same presigned PUTs, signed by the client itself.
	PresignedMBs []float64
	PresignedCPU []cpuTimes
	// PlainMBs is the operator's part endpoint over plain HTTP (the rest is
	// over TLS, as `make dev` serves it): the difference is what TLS costs.
	PlainMBs []float64
	PlainCPU []cpuTimes
	// ClientMBs is pkg/client uploading a file of the same bytes from disk
	// (at concurrency 1 only): what a service using the client gets.
	ClientMBs []float64
	ClientCPU []cpuTimes
}

// cpuTimes is CPU time (user + system) of the processes in a run, seconds.
type cpuTimes struct{ Client, Operator, S3 float64 }

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.Client - o.Client, c.Operator - o.Operator, c.S3 - o.S3}
}

// cpuNow reads the CPU time so far of this process (the client), the
// operator and versitygw.
func (b *bench) cpuNow(m *manager) cpuTimes {
	return cpuTimes{Client: procCPU(os.Getpid()), Operator: procCPU(m.proc.Cmd.Process.Pid), S3: procCPU(b.st.S3.Pid())}
}

// procCPU is utime + stime of a process from /proc/PID/stat, in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) start at state (3).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// proxyRun sends n parts of data through m's part endpoint with conc in
// flight and returns MB/s and the CPU each process spent.
func (b *bench) proxyRun(m *manager, conc, n int, part int64, data []byte, sum string) (float64, cpuTimes, error) {
	total := part * int64(n)
	c, err := b.createSession(m.url, []int64{total}, part)
	if err != nil {
		return 0, cpuTimes{}, err
	}
	defer func() { _, _ = b.st.S3.Client().AbortAll(b.ctx, session.SessionPrefix(uuid.MustParse(c.SessionID))) }()
	cpu0 := b.cpuNow(m)
	start := time.Now()
	err = parallel(conc, n, func(i int) error {
		url := fmt.Sprintf("%s/api/mocs/uploads/sessions/%s/files/%s/parts/%d", m.url, c.SessionID, c.Files[0].FileID, i+1)
		return b.putPart(url, data, sum)
	})
	if err != nil {
		return 0, cpuTimes{}, err
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), b.cpuNow(m).sub(cpu0), nil
}

// clientRun uploads file (total bytes) with pkg/client at concurrency conc:
// a session created, every part read from disk with its CRC32, as a service
// using the client does.
func (b *bench) clientRun(m *manager, conc int, total, part int64, file string) (float64, cpuTimes, error) {
	c := client.New(m.url, client.StaticToken(b.token))
	c.HTTP, c.Concurrency = httpClient, conc
	cpu0 := b.cpuNow(m)
	start := time.Now()
	s, err := c.CreateSession(b.ctx, []client.FileSpec{{Name: "bench.pdf", ContentType: "application/pdf", SizeBytes: total}}, part)
	if err != nil {
		return 0, cpuTimes{}, err
	}
	defer func() { _, _ = b.st.S3.Client().AbortAll(b.ctx, session.SessionPrefix(uuid.MustParse(s.SessionID))) }()
	if _, err := c.Upload(b.ctx, s.SessionID, []string{file}); err != nil {
		return 0, cpuTimes{}, err
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), b.cpuNow(m).sub(cpu0), nil
}

// dataFile writes n copies of data to a file for pkg/client to read (from
// the page cache, as a file just written or read is).
func (b *bench) dataFile(data []byte, n int) (string, error) {
	f, err := os.CreateTemp(b.dir, "bench-file-")
	if err != nil {
		return "", err
	}
	defer f.Close()
	for range n {
		if _, err := f.Write(data); err != nil {
			return "", err
		}
	}
	return f.Name(), f.Close()
}

// limit is the direct-to-S3 limit: the faster direct variant's median.
func (t tpRun) limit() float64 { return max(median(t.DirectMBs), median(t.DirectUnsignedMBs)) }

// throughput: 1 GiB in parts through the part endpoint vs UploadPart straight
// to the same versitygw, same data, same part size, same concurrency.
func (b *bench) throughput(res *results) error {
	configs := []struct{ partMiB, conc int }{{16, 1}, {16, 4}, {16, 16}, {8, 64}}
	if *conc64 {
		configs = configs[3:]
	}
	reps := 3
	if *quick {
		reps = 1
	}
	if *pprofOut != "" {
		if !*conc64 {
			configs = configs[1:2]
		}
		reps = 1
	}
	total := int64(*totalMiB) << 20
	s3c := b.st.S3.Client()
	for _, cfg := range configs {
		part := int64(cfg.partMiB) << 20
		n := int(total / part)
		data := make([]byte, part)
		_, _ = rand.Read(data)
		sum := crc32Header(data)
		run := tpRun{PartMiB: cfg.partMiB, Concurrency: cfg.conc}
		peer, err := b.startTusd(part)
		if err != nil {
			return err
		}
		paddr, _ := localenv.FreeAddr()
		m, err := b.manager(map[string]string{"PPROF_ADDR": paddr})
		if err != nil {
			return err
		}
		run.IdleRSS = m.rss()
		plain, err := b.startManager(nil, false)
		if err != nil {
			return err
		}
		var file string
		if cfg.conc == 1 {
			if file, err = b.dataFile(data, n); err != nil {
				return err
			}
		}
		for r := 0; r < reps; r++ {
			// Through the operator, over TLS.
			if *pprofOut != "" {
				go func() {
					time.Sleep(500 * time.Millisecond)
					resp, err := http.Get("http://" + paddr + "/debug/pprof/profile?seconds=5")
					if err != nil {
						say("pprof: %v", err)
						return
					}
					defer resp.Body.Close()
					f, _ := os.Create(*pprofOut)
					_, _ = io.Copy(f, resp.Body)
					_ = f.Close()
				}()
			}
			mbs, cpu, err := b.proxyRun(m, cfg.conc, n, part, data, sum)
			if err != nil {
				return err
			}
			run.OperatorMBs, run.OperatorCPU = append(run.OperatorMBs, mbs), append(run.OperatorCPU, cpu)

			// The same over plain HTTP: what TLS costs.
			mbs, cpu, err = b.proxyRun(plain, cfg.conc, n, part, data, sum)
			if err != nil {
				return fmt.Errorf("plain HTTP: %w", err)
			}
			run.PlainMBs, run.PlainCPU = append(run.PlainMBs, mbs), append(run.PlainCPU, cpu)
			if file != "" {
				if mbs, cpu, err = b.clientRun(m, cfg.conc, total, part, file); err != nil {
					return fmt.Errorf("pkg/client: %w", err)
				}
				run.ClientMBs, run.ClientCPU = append(run.ClientMBs, mbs), append(run.ClientCPU, cpu)
			}

			// Direct, with the SDK's defaults and with UNSIGNED-PAYLOAD.
			for _, unsigned := range []bool{false, true} {
				cpu0 := b.cpuNow(m)
				mbs, err := b.direct(s3c, cfg.conc, n, data, unsigned)
				if err != nil {
					return err
				}
				if unsigned {
					run.DirectUnsignedMBs = append(run.DirectUnsignedMBs, mbs)
					run.DirectCPU = append(run.DirectCPU, b.cpuNow(m).sub(cpu0))
				} else {
					run.DirectMBs = append(run.DirectMBs, mbs)
				}
			}
			// The peer: tusd, the same bytes as parallel tus uploads.
			mbs, cpu, err = b.tusdRun(peer, cfg.conc, total, data)
			if err != nil {
				return fmt.Errorf("tusd: %w", err)
			}
			run.TusdMBs, run.TusdCPU = append(run.TusdMBs, mbs), append(run.TusdCPU, cpu)

			// Direct mode: a part URL from the operator, the bytes to S3.
			mbs, cpu, err = b.directModeRun(m, cfg.conc, n, part, data)
			if err != nil {
				return fmt.Errorf("direct mode: %w", err)
			}
			run.DirectModeMBs, run.DirectModeCPU = append(run.DirectModeMBs, mbs), append(run.DirectModeCPU, cpu)
			// The same presigned requests, signed here: what direct mode costs
			// without the part URL call.
			if mbs, cpu, err = b.presignedRun(s3c, cfg.conc, n, data); err != nil {
				return fmt.Errorf("presigned: %w", err)
			}
			run.PresignedMBs, run.PresignedCPU = append(run.PresignedMBs, mbs), append(run.PresignedCPU, cpu)
			_, _ = s3c.AbortAll(b.ctx, "sessions/")
			say("throughput %d MiB × c%d run %d: operator %.0f MB/s (plain HTTP %.0f MB/s, operator CPU %.2f s), direct %.0f MB/s (SHA-256) / %.0f MB/s (unsigned), tusd %.0f MB/s, direct mode %.0f MB/s, presigned %.0f MB/s; CPU s through the operator %+v, direct %+v, tusd %+v, direct mode %+v",
				cfg.partMiB, cfg.conc, r+1, run.OperatorMBs[r], run.PlainMBs[r], run.PlainCPU[r].Operator, run.DirectMBs[r], run.DirectUnsignedMBs[r], run.TusdMBs[r], run.DirectModeMBs[r], run.PresignedMBs[r],
				run.OperatorCPU[r], run.DirectCPU[r], run.TusdCPU[r], run.DirectModeCPU[r])
		}
		_ = peer.proc.Stop(10 * time.Second)
		plain.stop()
		if file != "" {
			_ = os.Remove(file)
		}
		run.PeakRSS = m.peakRSS()
		run.Waited = metricSum(m.metrics, "mocupload_part_buffer_waits_total ")
		run.Spilled = metricSum(m.metrics, "mocupload_part_buffer_spills_total ")
		say("peak RSS of the operator over %d MiB × c%d: %.0f MiB", cfg.partMiB, cfg.conc, float64(run.PeakRSS)/(1<<20))
		m.stop()
		res.Throughput = append(res.Throughput, run)
	}
	return nil
}

// goBenchmarks runs the hot paths' Go benchmarks (a fixed count, so the run
// takes the same time everywhere) and keeps their result lines.
func (b *bench) goBenchmarks(res *results) error {
	say("Go benchmarks of the hot paths")
	root, err := localenv.RepoRoot()
	if err != nil {
		return err
	}
	// The engine's and the handler's packages hold failpoint tests, so their
	// test binaries need the failpoints build (it only adds the hooks).
	cmd := exec.CommandContext(b.ctx, "go", "test", "-tags", "failpoints", "-run", "^$", "-bench", ".", "-benchtime", "2000x", "-benchmem",
		"./internal/...", "./webhook/")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "pkg: ") || strings.HasPrefix(l, "Benchmark") {
			res.GoBench = append(res.GoBench, l)
		}
	}
	return nil
}

// direct uploads n parts of data with UploadPart straight to S3 and returns MB/s.
func (b *bench) direct(s3c *objectstore.Store, conc, n int, data []byte, unsigned bool) (float64, error) {
	key := "bench/direct-" + uuid.NewString()
	up, err := s3c.CreateMultipartUpload(b.ctx, key, "application/pdf", "")
	if err != nil {
		return 0, err
	}
	defer func() { _ = s3c.AbortMultipartUpload(b.ctx, key, up) }()
	var opts []func(*s3.Options)
	if unsigned {
		opts = append(opts, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		})
	}
	size := int64(len(data))
	var sum *string
	if unsigned {
		sum = aws.String(crc32Header(data)) // what the operator's parts carry
	}
	start := time.Now()
	err = parallel(conc, n, func(i int) error {
		_, err := s3c.Client.UploadPart(b.ctx, &s3.UploadPartInput{Bucket: &b.st.S3.Bucket, Key: &key, UploadId: &up,
			PartNumber: aws.Int32(int32(i + 1)), //nolint:gosec // at most 10,000 parts
			Body:       bytes.NewReader(data), ContentLength: &size, ChecksumCRC32: sum}, opts...)
		return err
	})
	if err != nil {
		return 0, err
	}
	return float64(size) * float64(n) / 1e6 / time.Since(start).Seconds(), nil
}

type latency struct {
	Name        string
	TotalMs     []float64
	S3Ms, TxMs  []float64
	Files, Part int
	// SHA256: each file declared its SHA-256, which finalize checks by
	// reading the object back; OperatorCPU is the operator's CPU seconds
	// over each finalize call.
	SHA256      bool
	OperatorCPU []float64
}

// finalizeLatency: 20 files × 3 parts, and 1 file × 200 parts (5 MiB parts),
// at least 5 runs each; the split comes from the finalize log line.
func (b *bench) finalizeLatency(res *results) error {
	m, err := b.manager(nil)
	if err != nil {
		return err
	}
	defer m.stop()
	part := int64(5 << 20)
	runs := 5
	cases := []struct {
		name         string
		files, parts int
		sha          bool
	}{{"20 files × 3 parts", 20, 3, false}, {"1 file × 200 parts", 1, 200, false}, {"1 file × 200 parts, SHA-256 declared", 1, 200, true}}
	if *quick {
		cases[1].parts, cases[2].parts = 20, 20
		runs = 2
	}
	data := make([]byte, part)
	_, _ = rand.Read(data)
	sum := crc32Header(data)
	for _, cs := range cases {
		l := latency{Name: cs.name, Files: cs.files, Part: cs.parts, SHA256: cs.sha}
		fileSHA := ""
		if cs.sha {
			h := sha256.New()
			for range cs.parts {
				h.Write(data)
			}
			fileSHA = hex.EncodeToString(h.Sum(nil))
		}
		for r := 0; r < runs; r++ {
			files := make([]map[string]any, cs.files)
			for i := range files {
				files[i] = map[string]any{"name": fmt.Sprintf("f%d.pdf", i), "contentType": "application/pdf", "sizeBytes": int64(cs.parts) * part}
				if fileSHA != "" {
					files[i]["checksum"] = map[string]any{"sha256": fileSHA}
				}
			}
			c, err := b.createSessionOf(m.url, files, part)
			if err != nil {
				return err
			}
			type job struct{ file, n int }
			var jobs []job
			for f := range c.Files {
				for n := 1; n <= cs.parts; n++ {
					jobs = append(jobs, job{f, n})
				}
			}
			if err := parallel(8, len(jobs), func(i int) error {
				j := jobs[i]
				url := fmt.Sprintf("%s/api/mocs/uploads/sessions/%s/files/%s/parts/%d", m.url, c.SessionID, c.Files[j.file].FileID, j.n)
				return b.putPart(url, data, sum)
			}); err != nil {
				return err
			}
			body := fmt.Sprintf(`{"uploadSessionId":%q,"title":"bench %s"}`, c.SessionID, uuid.NewString())
			cpu0 := b.cpuNow(m)
			start := time.Now()
			_, err = b.call("POST", m.url+"/api/mocs/uploads/finalize", strings.NewReader(body), int64(len(body)), nil)
			l.OperatorCPU = append(l.OperatorCPU, b.cpuNow(m).sub(cpu0).Operator)
			if err != nil {
				return err
			}
			l.TotalMs = append(l.TotalMs, float64(time.Since(start).Microseconds())/1000)
			s3ms, txms := finalizeSplit(m.log, c.SessionID)
			l.S3Ms, l.TxMs = append(l.S3Ms, s3ms), append(l.TxMs, txms)
			say("finalize %s run %d: %.1f ms (S3 %.1f, transaction %.1f)", cs.name, r+1, l.TotalMs[r], s3ms, txms)
		}
		res.Finalize = append(res.Finalize, l)
	}
	return nil
}

func finalizeSplit(logPath, sessionID string) (float64, float64) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "finalize succeeded" && m["sessionId"] == sessionID {
			s3, _ := m["s3Ms"].(float64)
			tx, _ := m["txMs"].(float64)
			return s3, tx
		}
	}
	return 0, 0
}

// reconcileThroughput: 1,000 UploadSessions applied as manifests → all Active.
func (b *bench) reconcileThroughput(res *results) error {
	m, err := b.manager(map[string]string{"RESYNC_INTERVAL": "10m"})
	if err != nil {
		return err
	}
	defer m.stop()
	n := 1000
	if *quick {
		n = 100
	}
	before := apiRequests(m.metrics)
	start := time.Now()
	if err := parallel(32, n, func(i int) error {
		us := &uploadsv1.UploadSession{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%04d", i), Namespace: "default"},
			Spec: uploadsv1.UploadSessionSpec{Owner: b.owner, Files: []uploadsv1.FileSpec{
				{Name: "i.pdf", ContentType: "application/pdf", SizeBytes: 1 << 20}}},
		}
		return b.k8s.Create(b.ctx, us)
	}); err != nil {
		return err
	}
	applied := time.Since(start)
	for {
		var list uploadsv1.UploadSessionList
		if err := b.k8s.List(b.ctx, &list, ctrlclient.InNamespace("default")); err != nil {
			return err
		}
		active := 0
		for _, us := range list.Items {
			if strings.HasPrefix(us.Name, "bench-") && us.Status.Phase == uploadsv1.PhaseActive {
				active++
			}
		}
		if active == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return fmt.Errorf("only %d of %d sessions Active after 10 minutes", active, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	res.Reconcile = reconcileResult{Sessions: n, Seconds: time.Since(start).Seconds(), ApplySeconds: applied.Seconds(),
		APIRequests: apiRequests(m.metrics) - before}
	say("reconcile: %d sessions Active in %.1f s (%d API requests by the operator)", n, res.Reconcile.Seconds, res.Reconcile.APIRequests)
	return nil
}

// apiRequests sums client-go's rest_client_requests_total of the manager.
func apiRequests(metricsURL string) int64 {
	return metricSum(metricsURL, "rest_client_requests_total{")
}

// metricSum adds up the samples of the operator's metrics whose line starts
// with prefix.
func metricSum(metricsURL, prefix string) int64 {
	resp, err := http.Get(metricsURL) //nolint:gosec // the benchmark's own manager on loopback
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, prefix) {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return int64(total)
}

// authLatency: a GET of a session (auth + one read) with the TokenReview cache
// warm, and with it effectively off (1 ns TTL: every request asks the API server).
func (b *bench) authLatency(res *results) error {
	for _, c := range []struct {
		name, ttl string
	}{{"TokenReview cache on (30s)", "30s"}, {"TokenReview cache off", "1ns"}} {
		m, err := b.manager(map[string]string{"AUTH_CACHE_TTL": c.ttl})
		if err != nil {
			return err
		}
		s, err := b.createSession(m.url, []int64{10}, 0)
		if err != nil {
			return err
		}
		var ms []float64
		for i := 0; i < 300; i++ {
			start := time.Now()
			if _, err := b.call("GET", m.url+"/api/mocs/uploads/sessions/"+s.SessionID, nil, -1, nil); err != nil {
				return err
			}
			ms = append(ms, float64(time.Since(start).Microseconds())/1000)
		}
		m.stop()
		res.Auth = append(res.Auth, authResult{Name: c.name, Ms: ms[20:]})
		say("auth %s: median %.2f ms", c.name, median(ms[20:]))
	}
	rdb, err := ratelimit.NewClient(b.st.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	l := &ratelimit.Limiter{Redis: rdb, Prefix: b.st.RedisKeyPrefix + "bench:", Limit: 1 << 30, Window: time.Minute}
	for i := 0; i < 2000; i++ {
		start := time.Now()
		l.Allow(b.ctx, "bench")
		res.RateLimit = append(res.RateLimit, float64(time.Since(start).Microseconds())/1000)
	}
	return nil
}

func median(xs []float64) float64 { return percentile(xs, 50) }

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
