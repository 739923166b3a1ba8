package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

// --help lists every flag with the variable behind it and exits 0.
func TestConfigHelpListsFlagsAndVariables(t *testing.T) {
	out, err := exec.Command(managerBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{
		"  --session-ttl duration\n", "(env SESSION_TTL, default \"1h\")", "(env PART_BUFFER_BUDGET_BYTES, default \"256MiB\")",
		"  --metrics-bind-address string\n", "  --health-probe-bind-address string\n", "  --leader-elect\n",
		"  --zap-log-level level\n", "  --zap-encoder encoder\n", "  --zap-devel\n", "  --kubeconfig string\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

// A bad value stops the manager before it connects anywhere, naming the flag
// or variable that gave it.
func TestConfigBadValueStopsTheManagerNamingItsSource(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		want, not string
	}{
		{[]string{"--max-file-size-bytes=1.5"}, map[string]string{"MAX_FILE_SIZE_BYTES": "1Gi"}, `--max-file-size-bytes="1.5"`, "MAX_FILE_SIZE_BYTES"},
		{nil, map[string]string{"MAX_FILE_SIZE_BYTES": "-1Gi"}, `MAX_FILE_SIZE_BYTES="-1Gi"`, "--max-file-size-bytes"},
		{[]string{"--log-format=xml"}, nil, `--log-format="xml"`, "LOG_FORMAT"},
	} {
		env := stack.ManagerEnv("127.0.0.1:0")
		for k, v := range tc.env {
			env[k] = v
		}
		cmd := exec.Command(managerBin, tc.args...)
		cmd.Env = localenv.EnvList(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%v %v: %v, want exit status 1\n%s", tc.args, tc.env, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), tc.not) {
			t.Errorf("%v %v: output %q; want it to name %s, not %s", tc.args, tc.env, out, tc.want, tc.not)
		}
	}
}

// Flags beat the environment: a session created on a replica started with
// --session-ttl=2h over SESSION_TTL=1h expires in two hours,
// --zap-log-level=error silences LOG_LEVEL=debug, and kubebuilder's
// --health-probe-bind-address serves the probes.
func TestConfigFlagsBeatTheEnvironment(t *testing.T) {
	t.Parallel() // its own namespace, watched by its own replica
	addr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	paddr, err := localenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	env := stack.ManagerEnv(addr)
	env["SESSION_TTL"] = "1h"
	env["LOG_LEVEL"] = "debug"
	// The session is created and activated in a namespace only this replica
	// watches: in one the main manager (SESSION_TTL 1h) watches, whichever
	// activation writes the row first sets expiresAt.
	ns := namespace(t, "flags")
	env["WATCH_NAMESPACE"], env["SESSION_NAMESPACE"] = ns, ns
	env["PROBE_ADDR"] = "0"
	liftLimits(env) // it creates as the suite's shared user
	logf, err := os.Create(filepath.Join(t.TempDir(), "replica.log"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := localenv.StartProcess(managerBin, env, logf, "--session-ttl=2h", "--zap-log-level=error",
		"--health-probe-bind-address="+paddr, "--part-buffer-budget-bytes=64Mi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := p.Stop(10 * time.Second)
		_ = logf.Close()
		b, _ := os.ReadFile(logf.Name())
		if err != nil || badOutput(b) != "" {
			t.Errorf("replica exited with %v; output has %q\n%s", err, badOutput(b), tail(b, 4000))
		}
	})
	deleteSessionsAtEnd(t, ns) // while the replica that removes them still runs
	if err := p.WaitHTTP(context.Background(), "http://"+addr+"/healthz", time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := call(t, "http://"+paddr, "GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("/readyz on --health-probe-bind-address: %d %s", r.status, r.raw)
	}
	cr := call(t, "http://"+addr, "POST", "/api/mocs/uploads/sessions", user(t).token,
		strings.NewReader(`{"files":[{"name":"ttl.pdf","contentType":"application/pdf","sizeBytes":1024}]}`))
	if cr.status != 201 {
		t.Fatalf("create: %d %s", cr.status, cr.raw)
	}
	expires, err := time.Parse(time.RFC3339, cr.str("expiresAt"))
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(expires); left < 119*time.Minute || left > 121*time.Minute {
		t.Errorf("expiresAt %s is %s away, want 2h (--session-ttl over SESSION_TTL)", expires, left)
	}
	for _, l := range readLogs(t, logf.Name()) {
		if lvl := l.str("level"); lvl == "debug" || lvl == "info" {
			t.Errorf("%s line under --zap-log-level=error: %v", lvl, l)
		}
	}
}
