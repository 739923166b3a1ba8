package partbuf

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetKeepsPartsInMemoryThenSpills(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	p := New(10*mib, dir)
	data := make([]byte, 6*mib)
	_, _ = rand.Read(data)

	a, err := p.Fill(ctx, bytes.NewReader(data), 6*mib)
	if err != nil || a.Spilled() {
		t.Fatalf("first part: spilled=%v err=%v, want in memory", a != nil && a.Spilled(), err)
	}
	b, err := p.Fill(ctx, bytes.NewReader(data), 6*mib) // 6+6 > 10 MiB: over the budget
	if err != nil || !b.Spilled() {
		t.Fatalf("second part: want spilled to disk, err=%v", err)
	}
	for _, buf := range []Buffer{a, b} {
		got, _ := io.ReadAll(buf)
		if !bytes.Equal(got, data) {
			t.Fatal("bytes differ")
		}
		// Rewindable, as the S3 client's retries need.
		if _, err := buf.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		again, _ := io.ReadAll(buf)
		if !bytes.Equal(again, data) {
			t.Fatal("bytes differ after rewind")
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spill file visible in %s: %v", dir, entries)
	}
	a.Close()
	c, err := p.Fill(ctx, bytes.NewReader(data), 6*mib) // budget released by a.Close
	if err != nil || c.Spilled() {
		t.Fatalf("after release: spilled=%v err=%v", c.Spilled(), err)
	}
	b.Close()
	c.Close()
	if st := p.Stats(); st.Spilled != 1 || st.Waited != 0 || st.InUseBytes != 0 {
		t.Fatalf("stats = %+v, want 1 spilled, none waited, nothing in use", st)
	}
}

func TestShortBody(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := New(20*mib, t.TempDir())
	for _, size := range []int64{10 * mib, 1000 * mib} { // in memory and spilled
		if _, err := p.Fill(ctx, bytes.NewReader(make([]byte, 5)), size); !errors.Is(err, ErrShortBody) {
			t.Fatalf("size %d: err = %v, want ErrShortBody", size, err)
		}
	}
	// The failed in-memory fill gave its budget back.
	if b, err := p.Fill(ctx, bytes.NewReader(make([]byte, 20*mib)), 20*mib); err != nil || b.Spilled() {
		t.Fatalf("budget leaked: %v", err)
	}
}

// A part that fits the budget waits for memory held by another part instead of
// spilling, up to WaitForMemory; past that, or past the part's own deadline,
// it spills.
func TestWaitForMemoryThenSpill(t *testing.T) {
	t.Parallel()
	data := make([]byte, 6*mib)
	cases := []struct {
		name        string
		wait        time.Duration
		releaseIn   time.Duration // when the first part gives its memory back (0: never)
		ctxTimeout  time.Duration
		wantSpilled bool
	}{
		{"memory freed while waiting", 5 * time.Second, 50 * time.Millisecond, time.Minute, false},
		{"no wait configured", 0, 0, time.Minute, true},
		{"wait runs out", 100 * time.Millisecond, 0, time.Minute, true},
		{"part deadline first", 5 * time.Second, 0, 100 * time.Millisecond, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := New(10*mib, t.TempDir())
			p.WaitForMemory = tc.wait
			held, err := p.Fill(context.Background(), bytes.NewReader(data), 6*mib)
			if err != nil || held.Spilled() {
				t.Fatalf("first part: %v", err)
			}
			if tc.releaseIn > 0 {
				time.AfterFunc(tc.releaseIn, func() { held.Close() })
			} else {
				defer held.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctxTimeout)
			defer cancel()
			b, err := p.Fill(ctx, bytes.NewReader(data), 6*mib)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Spilled() != tc.wantSpilled {
				t.Fatalf("spilled = %v, want %v", b.Spilled(), tc.wantSpilled)
			}
			if got, _ := io.ReadAll(b); !bytes.Equal(got, data) {
				t.Fatal("bytes differ")
			}
			// The second part, or the first while it is held; one slab made.
			want := Stats{InUseBytes: 6 * mib, AllocatedBytes: 6 * mib}
			if tc.wait > 0 {
				want.Waited = 1
			}
			if tc.wantSpilled {
				want.Spilled, want.SpilledBytes = 1, 6*mib
			}
			if st := p.Stats(); st != want {
				t.Fatalf("stats = %+v, want %+v", st, want)
			}
		})
	}
}

// Spilled parts together stay within the spill budget: a part that would
// exceed it is refused (ErrSpillBudget) and takes no disk; the bytes of a part
// whose buffer is closed are free again.
func TestSpillBudget(t *testing.T) {
	t.Parallel()
	p := New(1, t.TempDir()) // no memory: every part spills
	p.SpillBudget = 10
	a, err := p.Fill(context.Background(), strings.NewReader("0123456"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Fill(context.Background(), strings.NewReader("abcd"), 4); !errors.Is(err, ErrSpillBudget) {
		t.Fatalf("a part past the spill budget: %v, want ErrSpillBudget", err)
	}
	if got := p.Stats().SpilledBytes; got != 7 {
		t.Fatalf("spilled bytes in use = %d, want 7", got)
	}
	if _, err := p.Fill(context.Background(), strings.NewReader("abc"), 3); err != nil {
		t.Fatalf("a part within the budget: %v", err)
	}
	_ = a.Close()
	b, err := p.Fill(context.Background(), strings.NewReader("abcdefg"), 7)
	if err != nil {
		t.Fatalf("after a spilled part was closed: %v", err)
	}
	_ = b.Close()
}

const mib = 1 << 20

// Parts of nearby sizes (last parts of files) reuse one slab instead of each
// leaving one for the GC: that churn pushed a replica's heap past its soft
// memory limit in the soak. A slab holds a whole number of MiB (a power of two
// from 4 KiB below that), and the budget counts slabs, so two parts of 4 MiB +
// 1 byte (5 MiB slabs each) do not fit a budget of 8 MiB together.
func TestNearbySizesReuseOneSlabWithinTheBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := New(8*mib, t.TempDir())
	for i := range int64(50) {
		size := 5*mib + 1 + i*(mib/64) // 50 sizes in (5 MiB, 6 MiB)
		b, err := p.Fill(ctx, bytes.NewReader(make([]byte, size)), size)
		if err != nil || b.Spilled() {
			t.Fatalf("part of %d bytes: spilled=%v err=%v", size, b != nil && b.Spilled(), err)
		}
		b.Close()
	}
	if st := p.Stats(); st.AllocatedBytes != 6*mib {
		t.Fatalf("slabs made: %d bytes for 50 parts in (5 MiB, 6 MiB); want one 6 MiB slab reused", st.AllocatedBytes)
	}
	a, err := p.Fill(ctx, bytes.NewReader(make([]byte, 4*mib+1)), 4*mib+1)
	if err != nil || a.Spilled() {
		t.Fatalf("first part of 4 MiB + 1: %v", err)
	}
	defer a.Close()
	b, err := p.Fill(ctx, bytes.NewReader(make([]byte, 4*mib+1)), 4*mib+1)
	if err != nil || !b.Spilled() {
		t.Fatalf("second part of 4 MiB + 1 with 8 MiB of budget: want spilled (two 5 MiB slabs), err=%v", err)
	}
	b.Close()
	for size, class := range map[int64]int64{1: 4 << 10, 4 << 10: 4 << 10, 5000: 8 << 10, mib - 1: mib, mib: mib, 5*mib + 1: 6 * mib} {
		if got := slabClass(size); got != class {
			t.Errorf("slabClass(%d) = %d, want %d", size, got, class)
		}
	}
}

// One owner holds at most its share of memory (its further parts spill) and
// of the spill budget (then ErrOwnerShare); another owner's parts still get
// memory, and a share frees as the owner's parts close.
func TestOwnersHoldAtMostTheirShare(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	p := New(40*mib, t.TempDir())
	p.SpillBudget, p.OwnerShare = 40*mib, 0.25 // 10 MiB of each per owner
	data := make([]byte, 8*mib)
	alice, bob := WithOwner(context.Background(), "alice"), WithOwner(context.Background(), "bob")
	a1, err := p.Fill(alice, bytes.NewReader(data), 8*mib)
	if err != nil || a1.Spilled() {
		t.Fatalf("alice's first part: spilled=%v %v; want it in memory", a1 != nil && a1.Spilled(), err)
	}
	a2, err := p.Fill(alice, bytes.NewReader(data), 8*mib)
	if err != nil || !a2.Spilled() {
		t.Fatalf("alice's second part: %v; want it spilled (her memory share is taken)", err)
	}
	if _, err := p.Fill(alice, bytes.NewReader(data), 8*mib); !errors.Is(err, ErrOwnerShare) {
		t.Fatalf("alice's third part: %v; want ErrOwnerShare", err)
	}
	b1, err := p.Fill(bob, bytes.NewReader(data), 8*mib)
	if err != nil || b1.Spilled() {
		t.Fatalf("bob's part: %v; want it in memory", err)
	}
	for _, b := range []Buffer{a1, a2, b1} {
		_ = b.Close()
	}
	a3, err := p.Fill(alice, bytes.NewReader(data), 8*mib)
	if err != nil || a3.Spilled() {
		t.Fatalf("alice's part once hers closed: %v; want it in memory", err)
	}
	_ = a3.Close()
	if st := p.Stats(); st.InUseBytes != 0 || st.SpilledBytes != 0 {
		t.Fatalf("held after every close: %+v", st)
	}
}

// OwnerHasRoom answers without reserving, as Fill would decide.
func TestOwnerHasRoomLooksWithoutReserving(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	p := New(40*mib, t.TempDir())
	p.SpillBudget, p.OwnerShare = 40*mib, 0.25
	alice := WithOwner(context.Background(), "alice")
	data := make([]byte, 8*mib)
	var held []Buffer
	for range 2 { // one in memory, one on disk: her share of both
		b, err := p.Fill(alice, bytes.NewReader(data), 8*mib)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	if p.OwnerHasRoom(alice, 8*mib) {
		t.Fatal("room for alice with both her shares taken")
	}
	if !p.OwnerHasRoom(WithOwner(context.Background(), "bob"), 8*mib) {
		t.Fatal("no room for bob")
	}
	_ = held[0].Close()
	if !p.OwnerHasRoom(alice, 8*mib) {
		t.Fatal("no room for alice once her memory part closed")
	}
	_ = held[1].Close()
}

// Part buffers live outside the Go heap (the collector neither counts nor
// scans them, so a full budget does not hold the heap at the soft memory
// limit), the pool reports what they hold, and closed buffers beyond what is
// retained give their pages back. Not parallel: it reads the process's heap
// and RSS.
func TestSlabsLiveOutsideTheGoHeap(t *testing.T) {
	ctx := context.Background()
	const budget, part = 256 * mib, 16 * mib
	p := New(budget, t.TempDir())
	var resident atomic.Int64
	p.OnResident = resident.Store
	data := make([]byte, part)
	heapBefore := heapObjects()
	var bufs []Buffer
	for range 8 {
		b, err := p.Fill(ctx, bytes.NewReader(data), part)
		if err != nil || b.Spilled() {
			t.Fatalf("fill: spilled=%v err=%v", b != nil && b.Spilled(), err)
		}
		bufs = append(bufs, b)
	}
	if grew := heapObjects() - heapBefore; grew > part {
		t.Errorf("the Go heap grew by %d MiB for 128 MiB of parts: the buffers are on the heap", grew/mib)
	}
	if got := resident.Load(); got != 8*part {
		t.Errorf("resident %d MiB, want 128", got/mib)
	}
	rssFull := rss(t)
	for _, b := range bufs {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := resident.Load(); got != budget/4 {
		t.Errorf("resident after closing every part %d MiB, want the retained quarter of the budget (%d MiB)", got/mib, budget/4/mib)
	}
	if freed := rssFull - rss(t); freed < 48*mib {
		t.Errorf("closing 128 MiB of parts, 64 MiB of them beyond what is retained, gave back %d MiB of RSS", freed/mib)
	}
	// The cold slabs are reused: no new memory is mapped for the same parts.
	before := p.Stats().AllocatedBytes
	for range 8 {
		b, err := p.Fill(ctx, bytes.NewReader(data), part)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
	}
	if got := p.Stats().AllocatedBytes; got != before {
		t.Errorf("mapped %d MiB more for parts that fit the slabs already mapped", (got-before)/mib)
	}
}

func heapObjects() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
