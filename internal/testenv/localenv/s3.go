package localenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
)

// S3 is a running versitygw.
type S3 struct {
	Endpoint  string // http://127.0.0.1:port
	Addr      string
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string
	cmd       *exec.Cmd
	done      chan struct{}
}

// VersitygwBin is $VERSITYGW_BIN or bin/versitygw-<version>.
func VersitygwBin() (string, error) {
	if p := os.Getenv("VERSITYGW_BIN"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", "versitygw-"+VersitygwVersion)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("localenv: %s missing: run `make tools` first", p)
	}
	return p, nil
}

// S3Options choose where versitygw listens and stores.
type S3Options struct {
	Addr      string // empty: a free loopback port
	Dir       string // required: the posix backend's root
	Bucket    string // created before StartS3 returns
	AccessKey string // empty: random
	SecretKey string
	LogFile   string // empty: discarded
}

// StartS3 runs versitygw's posix backend on loopback and creates the bucket.
func StartS3(ctx context.Context, o S3Options) (*S3, error) {
	bin, err := VersitygwBin()
	if err != nil {
		return nil, err
	}
	if o.Addr == "" {
		if o.Addr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	if o.AccessKey == "" {
		o.AccessKey, o.SecretKey = "AK"+randHex(8), randHex(20)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, err
	}
	// Object metadata lives in user.* xattrs; a sidecar directory works on any
	// filesystem (some tmpfs lack them).
	sidecar := filepath.Join(o.Dir, ".sidecar")
	data := filepath.Join(o.Dir, "data")
	for _, d := range []string{sidecar, data} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(bin, "--port", o.Addr, "--access", o.AccessKey, "--secret", o.SecretKey,
		"--keep-alive", "posix", "--sidecar", sidecar, data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	s := &S3{Endpoint: "http://" + o.Addr, Addr: o.Addr, AccessKey: o.AccessKey, SecretKey: o.SecretKey,
		Bucket: o.Bucket, Dir: o.Dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := waitTCP(ctx, o.Addr, s.done, 20*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("versitygw did not start on %s: %w", o.Addr, err)
	}
	if o.Bucket != "" {
		if err := s.Client().EnsureBucket(ctx); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// Pid is versitygw's process id (benchmarks read its CPU time).
func (s *S3) Pid() int { return s.cmd.Process.Pid }

// Client returns an object-store client for the bucket.
func (s *S3) Client() *objectstore.Store { return objectstore.New(s.Options()) }

// Options are the client options for the bucket; tests change the endpoint
// (to a fault proxy) or the timeouts before objectstore.New.
func (s *S3) Options() objectstore.Options {
	return objectstore.Options{Endpoint: s.Endpoint, Bucket: s.Bucket, AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
}

// Stop terminates versitygw and waits for it.
func (s *S3) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
}

func waitTCP(ctx context.Context, addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
