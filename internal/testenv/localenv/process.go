package localenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Process is a child process (the manager) that tests and `make dev` run.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Build says how to compile a binary for tests.
type Build struct {
	// Tags are build tags ("failpoints" for the end-to-end tests).
	Tags []string
	// Race builds with the race detector (which needs cgo).
	Race bool
	// Cover builds with coverage of the whole module: the binary writes its
	// coverage into $GOCOVERDIR when it exits cleanly.
	Cover bool
}

// BuildManager compiles ./cmd/manager into dir, as the Dockerfile does (static,
// no cgo, stripped: what ships is what tests and benchmarks run), changed as b
// says, and returns the binary's path.
func BuildManager(ctx context.Context, dir string, b Build) (string, error) {
	return BuildBinary(ctx, filepath.Join(dir, "manager"), "./cmd/manager", b)
}

// BuildBinary compiles pkg into out.
func BuildBinary(ctx context.Context, out, pkg string, b Build) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out}
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	if b.Cover {
		args = append(args, "-cover", "-coverpkg=github.com/mocs-dev/upload-operator/...")
	}
	cgo := "CGO_ENABLED=0"
	if b.Race {
		args, cgo = append(args, "-race"), "CGO_ENABLED=1"
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), cgo)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// StartProcess starts bin with env added to the current environment, its
// output going to out. The child dies with its parent.
func StartProcess(bin string, env map[string]string, out io.Writer, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = EnvList(os.Environ(), env)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns how it
// ended (an *exec.ExitError names the signal that killed it).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %s", timeout)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits: a crash, not a shutdown.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits up to grace before killing.
func (p *Process) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		p.Kill()
		return fmt.Errorf("process did not stop within %s; killed", grace)
	}
}

// WaitHTTP polls url until it answers 200, the process exits, or timeout passes.
func (p *Process) WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return p.WaitHTTPWith(ctx, http.DefaultClient, url, timeout)
}

// WaitHTTPWith is WaitHTTP with a client of the caller's (one that trusts a
// test CA, for an HTTPS server).
func (p *Process) WaitHTTPWith(ctx context.Context, c *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited before %s answered: %w", url, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer within %s", url, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
