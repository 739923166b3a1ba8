// Command soak is `make soak`: a chaos soak with a history checker. It
// starts its own environment (control plane, database, Redis prefix,
// versitygw, three manager replicas with leader election, each behind its
// own fault proxies to S3, PostgreSQL and Redis), runs clients that upload,
// finalize, delete and abandon sessions while a seeded scheduler injects
// faults, records every answer the clients got, lets the system settle, and
// checks the history against what PostgreSQL and S3 hold. Any violation
// fails the run. See docs/reliability.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

var (
	duration = flag.Duration("duration", 10*time.Minute, "how long clients run and faults are injected")
	short    = flag.Bool("short", false, "a 60 s soak (what make test runs)")
	clients  = flag.Int("clients", 4, "concurrent clients")
	seed     = flag.Uint64("seed", 1, "seed of the workload and the fault scheduler (a failing run is replayed with its seed)")
	record   = flag.Bool("record", false, "save this run's summary in docs/reliability/ and rewrite docs/reliability.md")
	render   = flag.Bool("render", false, "rewrite docs/reliability.md from the saved summaries, running nothing")
	keep     = flag.Bool("keep", false, "keep the working directory (replica logs) after the run")
)

func say(f string, a ...any) { fmt.Fprintf(os.Stderr, "soak: "+f+"\n", a...) }

func main() {
	flag.Parse()
	if *short {
		*duration = time.Minute
	}
	root, err := localenv.RepoRoot()
	if err == nil && *render {
		err = renderDoc(root)
	} else if err == nil {
		err = run(root)
	}
	if err != nil {
		say("%v", err)
		os.Exit(1)
	}
}

func run(root string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mocupload-soak-")
	if err != nil {
		return err
	}
	keepDir := *keep
	defer func() {
		if keepDir {
			say("working directory (replica logs) kept: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	s := settings{SessionTTL: 45 * time.Second, StaleLock: 10 * time.Second, BufferBudget: 64 << 20, Lease: 4 * time.Second}
	e, err := startEnv(ctx, dir, s)
	if err != nil {
		return err
	}
	defer func() { _ = e.stop() }()
	db, err := pgx.Connect(ctx, e.st.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close(ctx)

	h := newHistory()
	w := &workload{e: e, h: h, seed: *seed, dir: dir, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	sched := &scheduler{e: e, h: h, rng: rand.New(rand.NewPCG(*seed, 0xfa017))} //nolint:gosec // seeded on purpose: a run is replayed by its seed
	start := time.Now()
	say("seed %d: %d clients for %s, faults on", *seed, *clients, *duration)
	load, stopLoad := context.WithTimeout(ctx, *duration)
	defer stopLoad()
	// Clients finish the session they are in after the load ends, within this.
	drain, stopDrain := context.WithTimeout(ctx, *duration+3*time.Minute)
	defer stopDrain()
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var bg sync.WaitGroup
	bg.Go(func() { sched.run(load) })
	bg.Go(func() { sched.watchCrashes(watch) })
	bg.Go(func() { progress(watch, h, e, start) })
	w.run(load, drain, *clients)
	loadEnd := time.Now()
	say("load ended after %s; clients done after %s; letting the system settle", loadEnd.Sub(start).Round(time.Second), time.Since(start).Round(time.Second))

	// Abandoned sessions expire after the TTL; a killed finalizer's lock goes
	// stale after STALE_LOCK_AFTER; the reconciler resyncs every 2 s.
	still, err := e.waitSettled(ctx, db, s.SessionTTL+s.StaleLock+90*time.Second)
	if err != nil {
		return err
	}
	settled := time.Now()
	final, err := e.final(ctx, db, h)
	if err != nil {
		return err
	}
	// The crash watch covered the load and the settling; the last
	// incarnations are stopped now, and each must shut down cleanly.
	stopWatch()
	bg.Wait()
	ends := append(sched.ends, e.stop()...)
	var violations []soakcheck.Violation
	if still != "" {
		violations = append(violations, soakcheck.Violation{Kind: soakcheck.StuckSession, Detail: "not settled: " + still})
	}
	violations = append(violations, soakcheck.Check(h.checked(), final)...)
	peaks, mix := map[string]int64{}, map[string]string{}
	var runs []string
	logs := map[string][]byte{}
	for _, r := range e.replicas {
		r.mu.Lock()
		for run, p := range r.peakRSS {
			peaks[run], mix[run] = p, r.peakMix[run]
		}
		r.mu.Unlock()
		runs = append(runs, r.allRuns()...)
		raw, err := os.ReadFile(r.log.Name())
		if err != nil {
			violations = append(violations, soakcheck.Violation{Kind: soakcheck.Crash, Detail: fmt.Sprintf("%s: log unreadable: %v", r.name, err)})
		}
		logs[r.name] = raw
	}
	violations = append(violations, soakcheck.CheckMemory(runs, peaks, s.BufferBudget)...)
	violations = append(violations, soakcheck.CheckRuns(ends)...)
	violations = append(violations, soakcheck.CheckLogs(logs)...)

	sum := summarize(h, final, violations, peaks, mix, s, start, loadEnd, settled)
	fmt.Println(sum.text())
	if *record {
		if err := sum.save(root); err != nil {
			return err
		}
		if err := renderDoc(root); err != nil {
			return err
		}
	}
	if len(violations) > 0 {
		keepDir = true
		return fmt.Errorf("%d violations (seed %d); replay with -seed %d", len(violations), *seed, *seed)
	}
	return nil
}

// progress says every 15 s how far the run is, so a stalled run shows.
func progress(ctx context.Context, h *history, e *env, start time.Time) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		calls, acked := len(h.puts)+len(h.finals)+len(h.calls), int64(0)
		for _, a := range h.acks {
			acked += a.bytes
		}
		faults, sessions := len(h.faults), len(h.sessions)
		h.mu.Unlock()
		up := 0
		for _, r := range e.replicas {
			if r.running() {
				up++
			}
		}
		say("%4.0f s: %d sessions, %d calls, %.0f MiB acknowledged, %d faults, %d replicas up",
			time.Since(start).Seconds(), sessions, calls, float64(acked)/(1<<20), faults, up)
	}
}

// saved is where -record keeps each seed's summary.
func savedDir(root string) string { return filepath.Join(root, "docs", "reliability") }

func (s *summary) save(root string) error {
	if err := os.MkdirAll(savedDir(root), 0o750); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(savedDir(root), fmt.Sprintf("seed-%d.json", s.Seed)), raw, 0o600)
}
