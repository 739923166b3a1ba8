package localenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
)

// Stack is every service the operator needs, started together.
type Stack struct {
	Kube           *Kube
	S3             *S3
	DatabaseURL    string
	RedisURL       string
	RedisKeyPrefix string
	Kubeconfig     string // path of an admin kubeconfig file
	Dir            string

	dropDB func()
}

// StackOptions tune a stack.
type StackOptions struct {
	Dir          string // working directory for S3 data and the kubeconfig (required)
	DatabaseName string // empty: a random name, dropped on Stop
	FreshDB      bool   // drop an existing database of that name first
	S3Addr       string // empty: a free port
	S3Bucket     string // default "mocs"
	S3AccessKey  string
	S3SecretKey  string
	S3LogFile    string
	RedisURL     string // default $TEST_REDIS_URL or redis://127.0.0.1:6379/0
	// ServiceAccountAdmission: see KubeOptions (for a Cluster's Pods).
	ServiceAccountAdmission bool
}

// StartStack starts a control plane, versitygw, and a database, and picks a
// Redis key prefix. On error everything already started is stopped.
func StartStack(ctx context.Context, o StackOptions) (st *Stack, err error) {
	st = &Stack{Dir: o.Dir}
	defer func() {
		if err != nil {
			_ = st.Stop() // the start's own error is the one to report
			st = nil
		}
	}()
	if o.S3Bucket == "" {
		o.S3Bucket = "mocs"
	}
	keep := o.DatabaseName != ""
	if o.DatabaseName == "" {
		o.DatabaseName = RandomName("mocupload_test")
	}
	var drop func()
	if st.DatabaseURL, drop, err = CreateDatabase(ctx, o.DatabaseName, o.FreshDB); err != nil {
		return st, err
	}
	if !keep {
		st.dropDB = drop
	}
	st.RedisURL = o.RedisURL
	if st.RedisURL == "" {
		st.RedisURL = os.Getenv("TEST_REDIS_URL")
	}
	if st.RedisURL == "" {
		st.RedisURL = "redis://127.0.0.1:6379/0"
	}
	st.RedisKeyPrefix = "mocupload:" + RandomName("t") + ":"
	if st.S3, err = StartS3(ctx, S3Options{Addr: o.S3Addr, Dir: filepath.Join(o.Dir, "s3"), Bucket: o.S3Bucket,
		AccessKey: o.S3AccessKey, SecretKey: o.S3SecretKey, LogFile: o.S3LogFile}); err != nil {
		return st, err
	}
	if st.Kube, err = StartKubeWith(ctx, KubeOptions{ServiceAccountAdmission: o.ServiceAccountAdmission}); err != nil {
		return st, err
	}
	kc, err := st.Kube.AdminKubeconfig()
	if err != nil {
		return st, err
	}
	st.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(st.Kubeconfig, kc, 0o600); err != nil {
		return st, err
	}
	if _, err := clientcmd.LoadFromFile(st.Kubeconfig); err != nil {
		return st, fmt.Errorf("kubeconfig: %w", err)
	}
	return st, nil
}

// ManagerEnv is the environment a manager process needs to use this stack.
func (st *Stack) ManagerEnv(httpAddr string) map[string]string {
	return map[string]string{
		"KUBECONFIG":            st.Kubeconfig,
		"DATABASE_URL":          st.DatabaseURL,
		"REDIS_URL":             st.RedisURL,
		"REDIS_KEY_PREFIX":      st.RedisKeyPrefix,
		"S3_ENDPOINT":           st.S3.Endpoint,
		"S3_BUCKET":             st.S3.Bucket,
		"AWS_ACCESS_KEY_ID":     st.S3.AccessKey,
		"AWS_SECRET_ACCESS_KEY": st.S3.SecretKey,
		"HTTP_ADDR":             httpAddr,
		"METRICS_ADDR":          "0",
		"PROBE_ADDR":            "0",
	}
}

// Stop stops everything the stack started.
func (st *Stack) Stop() error {
	var errs []error
	if st.Kube != nil {
		errs = append(errs, st.Kube.Stop())
	}
	if st.S3 != nil {
		st.S3.Stop()
	}
	if st.dropDB != nil {
		st.dropDB()
	}
	return errors.Join(errs...)
}

// EnvList turns a map into KEY=VALUE pairs appended to base.
func EnvList(base []string, env map[string]string) []string {
	out := append([]string(nil), base...)
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
