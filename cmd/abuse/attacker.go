package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"

	uploadsv1 "github.com/mocs-dev/upload-operator/api/v1alpha1"
)

// spec is what the attacker process needs of the environment.
type spec struct {
	API       string
	Attackers []accountSpec
	Quick     bool
}

type accountSpec struct{ Name, Token string }

// tallyOut is an attacker's tally as it reports it on exit.
type tallyOut struct {
	ByStatus     map[string]int
	NoRetryAfter int
	Served       int
}

// startAttacker runs attacks (by index into e.attacks()) in a child process
// at the lowest CPU priority; stop ends it and returns its tally.
func (e *env) startAttacker(idx []int) (stop func() (*tally, error), err error) {
	sp := spec{API: e.api, Quick: *quick}
	for _, a := range e.attackers {
		sp.Attackers = append(sp.Attackers, accountSpec{a.name, a.token})
	}
	raw, _ := json.Marshal(sp)
	path := filepath.Join(e.dir, "attacker.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range idx {
		names = append(names, strconv.Itoa(i))
	}
	cmd := exec.Command("nice", "-n", "19", exe, "-attacker", strings.Join(names, ","), "-spec", path) //nolint:gosec // this program itself
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.st.Kubeconfig)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (*tally, error) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				return nil, fmt.Errorf("attacker: %w", err)
			}
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("the attacker did not stop within 2 minutes of SIGTERM")
		}
		var to tallyOut
		if err := json.Unmarshal([]byte(out.String()), &to); err != nil {
			return nil, fmt.Errorf("attacker's tally %q: %w", out.String(), err)
		}
		return &tally{byStatus: to.ByStatus, noRetryAfter: to.NoRetryAfter, served: to.Served}, nil
	}, nil
}

// runAttacker is the attacker process: it runs the attacks until SIGTERM and
// prints its tally.
func runAttacker(names, path string) error {
	raw, err := os.ReadFile(path) //nolint:gosec // written by the parent
	if err != nil {
		return err
	}
	var sp spec
	if err := json.Unmarshal(raw, &sp); err != nil {
		return err
	}
	*quick = sp.Quick
	e := &env{api: sp.API}
	for _, a := range sp.Attackers {
		e.attackers = append(e.attackers, account{a.Name, a.Token})
	}
	cfg, err := ctrlconfig.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	scheme := k8sruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = uploadsv1.AddToScheme(scheme)
	if e.k8s, err = ctrlclient.New(cfg, ctrlclient.Options{Scheme: scheme}); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	all := e.attacks()
	t := newTally()
	done := make(chan struct{})
	running := 0
	for _, n := range strings.Split(names, ",") {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= len(all) {
			return fmt.Errorf("no attack %q", n)
		}
		running++
		go func() { all[i].run(ctx, t); done <- struct{}{} }()
	}
	for range running {
		<-done
	}
	return json.NewEncoder(os.Stdout).Encode(tallyOut{ByStatus: t.byStatus, NoRetryAfter: t.noRetryAfter, Served: t.served})
}
