package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
	"github.com/mocs-dev/upload-operator/internal/config"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// The victim and attacker tenants: a namespace each.
const (
	victimNS   = "victim"
	attackerNS = "attacker"
	// floodAccounts is how many ServiceAccounts flood creations and finalizes;
	// the attacker has more, one set per other attack, so that each attack
	// has sessions of its own (the flood's accounts sit at their active-session
	// cap, which would stop the other attacks before they began).
	floodAccounts = 50
	// slowAccounts send the slow bodies; getAccount, finalizeAccount and
	// manifestAccount run attacks (d), (e) and (f).
	slowAccounts     = 5
	firstSlow        = floodAccounts
	getAccount       = firstSlow + slowAccounts
	finalizeAccount  = getAccount + 1
	manifestAccount  = finalizeAccount + 1
	attackerAccounts = manifestAccount + 1
)

type account struct {
	name, token string
}

// env is the run's own environment: services and one operator replica with
// default settings.
type env struct {
	st     *localenv.Stack
	dir    string
	k8s    ctrlclient.Client
	proc   *localenv.Process
	api    string
	budget int64
	pprof  string // the manager's PPROF_ADDR, with -pprof
	victim account
	// attackers are the attacker's ServiceAccounts; each connects from a
	// loopback address of its own.
	attackers []account
	// v is the victim's workload, the same in every phase.
	v *victim
}

func start(ctx context.Context, dir string) (*env, error) {
	e := &env{dir: dir}
	say("building the manager")
	bin, err := localenv.BuildManager(ctx, dir, localenv.Build{})
	if err != nil {
		return nil, err
	}
	say("starting control plane, versitygw, database")
	if e.st, err = localenv.StartStack(ctx, localenv.StackOptions{Dir: dir}); err != nil {
		return nil, err
	}
	scheme := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = uploadsv1.AddToScheme(scheme)
	if e.k8s, err = ctrlclient.New(e.st.Kube.Config, ctrlclient.Options{Scheme: scheme}); err != nil {
		return nil, e.fail(err)
	}
	for _, ns := range []string{victimNS, attackerNS, "uploads"} {
		if err := e.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, e.fail(err)
		}
	}
	say("creating the victim's ServiceAccount and the attacker's %d in one namespace", attackerAccounts)
	if e.victim, err = e.account(ctx, victimNS, "builder"); err != nil {
		return nil, e.fail(err)
	}
	for i := range attackerAccounts {
		a, err := e.account(ctx, attackerNS, fmt.Sprintf("bot-%02d", i))
		if err != nil {
			return nil, e.fail(err)
		}
		e.attackers = append(e.attackers, a)
	}
	addr, err := localenv.FreeAddr()
	if err != nil {
		return nil, e.fail(err)
	}
	env := e.st.ManagerEnv(addr)
	env["SESSION_NAMESPACE"] = "uploads"
	env["SPILL_DIR"] = filepath.Join(dir, "spill")
	env["LOG_LEVEL"] = "error"
	if *pprofDir != "" {
		if e.pprof, err = localenv.FreeAddr(); err != nil {
			return nil, e.fail(err)
		}
		env["PPROF_ADDR"] = e.pprof
	}
	e.budget = 256 << 20 // PART_BUFFER_BUDGET_BYTES's default, which the run keeps
	logf, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, e.fail(err)
	}
	if e.proc, err = localenv.StartProcess(bin, env, logf); err != nil {
		return nil, e.fail(err)
	}
	e.api = "http://" + addr
	if err := e.proc.WaitHTTP(ctx, e.api+"/healthz", time.Minute); err != nil {
		return nil, e.fail(err)
	}
	return e, nil
}

func (e *env) account(ctx context.Context, ns, name string) (account, error) {
	cs, err := kubernetes.NewForConfig(e.st.Kube.Config)
	if err != nil {
		return account{}, err
	}
	user, token, err := localenv.ServiceAccountToken(ctx, cs, ns, name, config.DefaultAudience, 6*time.Hour)
	return account{name: user, token: token}, err
}

func (e *env) fail(err error) error {
	e.stop()
	return err
}

func (e *env) stop() {
	if e.proc != nil {
		_ = e.proc.Stop(30 * time.Second)
		e.proc = nil
	}
	if e.st != nil {
		if err := e.st.Stop(); err != nil {
			say("stopping the services: %v", err)
		}
		e.st = nil
	}
}

// rss is the manager's VmRSS now, in bytes.
func (e *env) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.proc.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src (127.0.0.1 for the victim).
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64,
		ResponseHeaderTimeout: 2 * time.Minute}}
}

// attackerAddr is the source address of attacker ServiceAccount i.
func attackerAddr(i int) string { return fmt.Sprintf("127.0.1.%d", 1+i%250) }

// answer is one HTTP answer.
type answer struct {
	status     int
	retryAfter string
	body       map[string]any
	err        error
}

// failure is the answer's transport error, or that it was refused.
func (a answer) failure() error {
	if a.err != nil {
		return a.err
	}
	return errors.New("refused")
}

// call makes a JSON request (body nil: none) and reads the answer.
func call(ctx context.Context, c *http.Client, method, url, token string, body any) answer {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// session is a created session: its id and files.
type session struct {
	id       string
	partSize int64
	files    []struct {
		ID        string `json:"fileId"`
		PartCount int    `json:"partCount"`
	}
}

// create opens a session of files of the given sizes.
func create(ctx context.Context, c *http.Client, api, token, transfer string, partSize int64, sizes ...int64) (*session, answer) {
	var files []map[string]any
	for i, sz := range sizes {
		files = append(files, map[string]any{"name": fmt.Sprintf("part-%03d.pdf", i), "contentType": "application/pdf", "sizeBytes": sz})
	}
	body := map[string]any{"files": files, "transfer": transfer}
	if partSize > 0 {
		body["partSizeBytes"] = partSize
	}
	a := call(ctx, c, http.MethodPost, api+"/api/mocs/uploads/sessions", token, body)
	if a.err != nil || a.status != http.StatusCreated {
		return nil, a
	}
	raw, _ := json.Marshal(a.body)
	var s struct {
		ID       string `json:"sessionId"`
		PartSize int64  `json:"partSizeBytes"`
		Files    []struct {
			ID        string `json:"fileId"`
			PartCount int    `json:"partCount"`
		} `json:"files"`
	}
	_ = json.Unmarshal(raw, &s)
	out := &session{id: s.ID, partSize: s.PartSize}
	out.files = s.Files
	return out, a
}

func (s *session) partPath(api string, file, n int) string {
	return fmt.Sprintf("%s/api/mocs/uploads/sessions/%s/files/%s/parts/%d", api, s.id, s.files[file].ID, n)
}
