// Command abuse is `make abuse`: a noisy-neighbour run. It starts its own
// services (as the tests do) and one operator replica with default settings,
// then measures what a well-behaved tenant (the victim: part PUTs of 16 MiB, 4
// at a time, on proxied sessions, and part URLs plus PUTs straight to S3 on a
// direct one) gets alone, and again while an attacker tenant runs each attack
// in turn and then all at once:
//
//	(a) slow bodies: part PUTs declaring 64 MiB that send a byte a second
//	(b) a create/finalize flood from 50 ServiceAccounts of one namespace
//	(c) JWT-shaped garbage tokens as fast as it can
//	(d) a GET flood on a direct session of 100 files
//	(e) finalize of a 100-file session with nothing uploaded, read slowly
//	(f) manifests creating 1,000 large direct sessions
//
// Every attacker connection comes from a loopback address of its own
// (127.0.1.x), as pods have addresses of their own; the victim's from
// 127.0.0.1. The result table (and an SVG plot) are written into
// docs/security.md between its abuse markers. -quick is the short form
// `make test` runs: 5 s phases; it fails on a victim error, a refusal without
// Retry-After or the memory bound (the throughput figures are the full run's).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

var (
	phaseLen = flag.Duration("phase", 20*time.Second, "how long each phase runs")
	quick    = flag.Bool("quick", false, "the short form (5 s phases, fewer manifests); does not rewrite the docs")
	write    = flag.Bool("write", true, "rewrite the table and plot in docs/security.md (ignored with -quick)")
	only     = flag.String("only", "", "run these attacks only, by letter (e.g. b,f), without the combined phase; does not rewrite the docs")
	pprofDir = flag.String("pprof", "", "write a CPU profile of the operator during each phase into this directory (<phase>.pprof)")
	// The attacker runs as a child process of its own (these flags), at the
	// lowest CPU priority: its clients stand for machines of their own, so
	// their CPU must not be what slows the operator on a shared machine.
	attackNames = flag.String("attacker", "", "run as the attacker: these attacks (by index, comma-separated) until SIGTERM")
	attackSpec  = flag.String("spec", "", "the attacker's environment (JSON), with -attacker")
)

func main() {
	flag.Parse()
	if *quick {
		*phaseLen = 5 * time.Second
	}
	if *attackNames != "" {
		if err := runAttacker(*attackNames, *attackSpec); err != nil {
			fmt.Fprintln(os.Stderr, "make abuse (attacker):", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "make abuse:", err)
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
	dir, err := os.MkdirTemp("", "mocupload-abuse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer e.stop()

	if e.v, err = newVictim(ctx, e); err != nil {
		return err
	}
	var rows []row
	alone, err := e.phase(ctx, "alone", nil)
	if err != nil {
		return err
	}
	rows = append(rows, alone)
	var every []int
	for i, a := range e.attacks() {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), string(rune('a'+i))) {
			continue
		}
		r, err := e.phase(ctx, a.name, []int{i})
		if err != nil {
			return err
		}
		rows = append(rows, r)
		every = append(every, i)
	}
	if *only == "" {
		all, err := e.phase(ctx, "all at once", every)
		if err != nil {
			return err
		}
		rows = append(rows, all)
	}

	rep := report{Rows: rows, Budget: e.budget, Phase: *phaseLen, Generated: time.Now().UTC()}
	fmt.Println(rep.markdown())
	failures := rep.failures()
	if !*quick && *write && *only == "" {
		if err := rep.write(filepath.Join(root, "docs")); err != nil {
			return err
		}
		say("docs/security.md and docs/abuse.svg rewritten")
	}
	for _, f := range failures {
		say("target missed: %s", f)
	}
	if broken := rep.broken(); len(broken) > 0 {
		return fmt.Errorf("%d target(s) that must hold on any machine missed", len(broken))
	}
	return nil
}
