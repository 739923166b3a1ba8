package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/mocs-dev/upload-operator/internal/testenv/faultproxy"
	"github.com/mocs-dev/upload-operator/internal/testenv/soakcheck"
)

// Fault kinds.
const (
	faultS3Reset       = "S3 connections reset"
	faultS3Latency     = "S3 latency"
	faultS3Bandwidth   = "S3 bandwidth limit"
	faultS3Blackhole   = "S3 blackhole"
	faultPostgresCut   = "PostgreSQL cut"
	faultRedisDown     = "Redis down"
	faultKill          = "replica SIGKILLed"
	faultTerm          = "replica SIGTERMed"
	faultLeaderKill    = "leader SIGKILLed mid-finalize"
	faultLeaderKillIdl = "leader SIGKILLed (no finalize in flight)"
	faultClockSkew     = "replica clock skewed"
	faultLostLease     = "replica exited after losing the leader lease (restarted; not injected)"
)

var faultWeights = []struct {
	kind   string
	weight int
}{
	{faultS3Reset, 10}, {faultS3Latency, 10}, {faultS3Bandwidth, 8}, {faultS3Blackhole, 7}, {faultPostgresCut, 9},
	{faultRedisDown, 6}, {faultKill, 7}, {faultTerm, 5}, {faultLeaderKill, 7}, {faultClockSkew, 5},
}

// scheduler injects faults at random (seeded: the same seed gives the same
// choices, though not the same timing), at most two at a time, never taking
// every replica down at once.
type scheduler struct {
	e      *env
	h      *history
	rng    *rand.Rand
	rngMu  sync.Mutex
	down   sync.Mutex // serialises process faults
	endsMu sync.Mutex
	ends   []soakcheck.RunEnd // incarnations that crashed or did not stop cleanly
}

func (s *scheduler) intn(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

func (s *scheduler) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.intn(int(hi-lo)/int(time.Millisecond)+1))*time.Millisecond
}

func (s *scheduler) pick() string {
	total := 0
	for _, f := range faultWeights {
		total += f.weight
	}
	r := s.intn(total)
	for _, f := range faultWeights {
		if r -= f.weight; r < 0 {
			return f.kind
		}
	}
	return faultWeights[0].kind
}

// run injects faults until ctx ends, then waits for the ones in force to
// heal.
func (s *scheduler) run(ctx context.Context) {
	slots := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-time.After(s.between(1500*time.Millisecond, 5*time.Second)):
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // two faults in force already
		}
		kind := s.pick()
		r := s.e.replicas[s.intn(len(s.e.replicas))]
		wg.Go(func() {
			defer func() { <-slots }()
			if err := s.inject(ctx, kind, r); err != nil {
				say("fault %s on %s: %v", kind, r.name, err)
			}
		})
	}
}

func (s *scheduler) inject(ctx context.Context, kind string, r *replica) error {
	// A replica stopped here is restarted even if the load ends meanwhile.
	restart := context.WithoutCancel(ctx)
	from := time.Now()
	record := func(target string) { s.h.fault(fault{Kind: kind, Target: target, From: from, To: time.Now()}) }
	toxic := func(p *faultproxy.Proxy, typ, stream, attrs string, d time.Duration) error { //nolint:contextcheck // a fault heals whatever the run's context
		name := fmt.Sprintf("soak-%d", time.Now().UnixNano())
		if err := p.AddToxic(name, typ, stream, attrs); err != nil {
			return err
		}
		time.Sleep(d)
		record(r.name)
		return p.RemoveToxic(name)
	}
	switch kind {
	case faultS3Reset:
		return toxic(r.s3, "reset_peer", "upstream", `{"timeout":0}`, s.between(time.Second, 4*time.Second))
	case faultS3Latency:
		return toxic(r.s3, "latency", "downstream", fmt.Sprintf(`{"latency":%d,"jitter":100}`, 200+s.intn(1300)), s.between(4*time.Second, 12*time.Second))
	case faultS3Bandwidth:
		return toxic(r.s3, "bandwidth", "upstream", fmt.Sprintf(`{"rate":%d}`, 256+s.intn(3840)), s.between(4*time.Second, 12*time.Second))
	case faultS3Blackhole:
		// Data stops both ways; connections stay open (a dead path, not a refusal).
		return toxic(r.s3, "timeout", "upstream", `{"timeout":0}`, s.between(3*time.Second, 10*time.Second))
	case faultPostgresCut:
		r.pg.Disable()
		time.Sleep(s.between(2*time.Second, 6*time.Second))
		err := r.pg.Enable()
		record(r.name)
		return err
	case faultRedisDown:
		r.redis.Disable()
		time.Sleep(s.between(3*time.Second, 10*time.Second))
		err := r.redis.Enable()
		record(r.name)
		return err
	}
	// Process faults: one at a time, and only with another replica up.
	s.down.Lock()
	defer s.down.Unlock()
	if !r.running() || s.running() < 2 {
		return nil
	}
	switch kind {
	case faultKill, faultTerm:
		sig := map[string]syscall.Signal{faultKill: syscall.SIGKILL, faultTerm: syscall.SIGTERM}[kind]
		run := r.run()
		if err := r.stop(sig); err != nil {
			s.unclean(run, err)
		}
		record(r.name)
		time.Sleep(s.between(500*time.Millisecond, 4*time.Second))
		return r.start(restart, s.e.bin, 0)
	case faultLeaderKill:
		leader, mid := s.waitLeaderFinalizing(ctx)
		if leader == nil {
			return nil
		}
		if !mid {
			kind = faultLeaderKillIdl
		}
		_ = leader.stop(syscall.SIGKILL)
		s.h.fault(fault{Kind: kind, Target: leader.name, From: time.Now(), To: time.Now()})
		time.Sleep(s.between(time.Second, 3*time.Second))
		return leader.start(restart, s.e.bin, 0)
	case faultClockSkew:
		skew := s.between(2*time.Second, 10*time.Second)
		if s.intn(2) == 0 {
			skew = -skew
		}
		kind = fmt.Sprintf("%s (%+.1fs)", faultClockSkew, skew.Seconds())
		run := r.run()
		if err := r.stop(syscall.SIGTERM); err != nil {
			s.unclean(run, err)
		}
		err := r.start(restart, s.e.bin, skew)
		// The skew stays until the replica's next restart; the window shown
		// is the restart.
		record(r.name)
		return err
	}
	return nil
}

func (s *scheduler) running() int {
	n := 0
	for _, r := range s.e.replicas {
		if r.running() {
			n++
		}
	}
	return n
}

// waitLeaderFinalizing finds the leader and waits (up to 10 s) until it has a
// finalize in flight; mid is false when none came.
func (s *scheduler) waitLeaderFinalizing(ctx context.Context) (leader *replica, mid bool) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, r := range s.e.replicas {
			if r.running() && r.leader(ctx) {
				leader = r
			}
		}
		if leader != nil && leader.finalizing() {
			return leader, true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return leader, false
}

// ended records how a replica incarnation ended, when that is a finding.
func (s *scheduler) ended(e soakcheck.RunEnd) {
	s.endsMu.Lock()
	defer s.endsMu.Unlock()
	s.ends = append(s.ends, e)
}

func (s *scheduler) unclean(run string, err error) { s.ended(soakcheck.RunEnd{Run: run, Err: err}) }

// watchCrashes records replicas that exit without the scheduler stopping
// them; it runs until the run's checks are done (load, settling and all).
func (s *scheduler) watchCrashes(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, r := range s.e.replicas {
			r.mu.Lock()
			run := fmt.Sprintf("%s#%d", r.name, r.runs)
			r.mu.Unlock()
			if r.exitedOnItsOwn() && !seen[run] {
				seen[run] = true
				if r.lostLease() {
					// controller-runtime exits when a renewal misses its
					// deadline (a starved or cut-off leader): by design, and
					// the Pod would restart. Shown in the summary, not a crash.
					s.h.fault(fault{Kind: faultLostLease, Target: r.name, From: time.Now(), To: time.Now()})
				} else {
					s.ended(soakcheck.RunEnd{Run: run, ExitedUnbidden: true})
				}
				s.down.Lock()
				_ = r.stop(syscall.SIGKILL) // reaps it
				if err := r.start(ctx, s.e.bin, 0); err != nil {
					say("restarting %s after its crash: %v", r.name, err)
				}
				s.down.Unlock()
			}
		}
	}
}
