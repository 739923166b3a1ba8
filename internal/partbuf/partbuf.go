// Package partbuf holds a part's bytes between the client and S3. A part is
// kept whole in memory so the S3 client can rewind and retry it on a
// transient error without the client resending (and so SigV4 can hash it
// where it must); with Stream it is sent on while it is still arriving.
//
// Memory is bounded by a byte budget shared by all parts in flight: a part
// whose size fits in what is left of the budget is held in memory; when the
// budget is taken, a part waits up to WaitForMemory for another to finish and
// is spilled to a temporary file in the spill directory after that. Memory
// therefore stays at most budget + small per-request overhead whatever the
// concurrency; disk use is bounded by (concurrency − budget/partSize) × partSize.
//
// Why wait at all: spilling writes the part to disk and reads it back, which
// cost the operator half again as much CPU per byte in `make bench` (8 MiB ×
// 64 in flight), while a part held by a busy replica frees its memory within
// about a part's transfer time. A short wait turns most spills into a brief
// queue; a long one would eat into the part's upload timeout.
package partbuf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Pool hands out buffers within a memory budget.
type Pool struct {
	// WaitForMemory is how long a part that fits the budget waits for memory
	// taken by other parts before it is spilled (0: spill at once).
	WaitForMemory time.Duration
	// SpillBudget bounds the bytes of all spilled parts together (0: no
	// bound). Spill files are unlinked, so kubelet's disk accounting of the
	// directory does not see them: without a bound, enough large parts at once
	// fill the node's disk. A part that would exceed it is refused with
	// ErrSpillBudget, for the client to send again later.
	SpillBudget int64
	// OwnerShare bounds what one owner (WithOwner) holds, as a fraction of
	// each budget (0: no bound): past its share of memory an owner's parts
	// spill, past its share of the spill budget they are refused with
	// ErrOwnerShare. One tenant's slow or large parts then cannot take the
	// memory every other tenant's parts need.
	OwnerShare float64
	// OnResident, when set, is told the bytes the slabs hold in memory after
	// each change (under the pool's lock: keep it quick). Slabs are mapped
	// outside the Go heap, so the manager lowers the runtime's soft memory
	// limit by as much and the process stays within budget + its margin.
	OnResident func(bytes int64)

	budget   int64
	sem      *semaphore.Weighted
	spillDir string

	mu      sync.Mutex
	spilled int64 // parts spilled so far (for metrics and tests)
	onDisk  int64 // bytes of the spill files open now
	// memBy and diskBy are what each owner holds now (owners with none are
	// not kept).
	memBy, diskBy map[string]int64
	waited        int64 // parts that waited for memory
	// Free slabs by size, reused between parts. Slabs in use plus free slabs
	// never exceed the budget, so the buffers' memory is bounded by the budget
	// itself, not by the budget plus whatever a pool or the GC holds on to.
	free      map[int64][]*[]byte
	freeBytes int64
	inUse     int64
	// Cold slabs gave their pages back but keep their mapping (toCold).
	cold      map[int64][]*[]byte
	coldBytes int64
	coldSince []coldSlab // oldest first
	allocated int64      // bytes of slabs ever made (for tests: reuse keeps it low)
}

// New returns a pool with the given memory budget (bytes) and spill directory.
func New(budget int64, spillDir string) *Pool {
	return &Pool{budget: budget, sem: semaphore.NewWeighted(budget), spillDir: spillDir}
}

// Buffer is one part's bytes, readable and seekable from the start.
type Buffer interface {
	io.ReadSeeker
	// Close releases memory or removes the spill file.
	Close() error
	// Spilled reports whether the bytes are on disk.
	Spilled() bool
}

// ErrShortBody means the client sent fewer bytes than it announced.
var ErrShortBody = errors.New("request body shorter than Content-Length")

// ErrSpillBudget means neither memory nor the spill budget has room for the
// part now.
var ErrSpillBudget = errors.New("no room for the part: the memory and spill budgets are in use")

// ErrOwnerShare means the part's owner already holds its share of memory and
// of the spill budget.
var ErrOwnerShare = errors.New("no room for the part: its owner holds its share of the part buffers")

type ownerKey struct{}

// WithOwner names whose part a Fill or Stream with ctx receives, for
// OwnerShare.
func WithOwner(ctx context.Context, owner string) context.Context {
	return context.WithValue(ctx, ownerKey{}, owner)
}

func ownerOf(ctx context.Context) string {
	o, _ := ctx.Value(ownerKey{}).(string)
	return o
}

// OwnerHasRoom reports whether a part of size bytes of ctx's owner fits its
// share of memory or of the spill budget now: a cheap look before any other
// work for the part (the reservation itself is Fill's or Stream's, and may
// still be refused if others took the room meanwhile).
func (p *Pool) OwnerHasRoom(ctx context.Context, size int64) bool {
	owner := ownerOf(ctx)
	class := slabClass(size)
	p.mu.Lock()
	defer p.mu.Unlock()
	mem, disk := p.share(p.budget), p.share(p.SpillBudget)
	return mem == 0 || disk == 0 || p.memBy[owner]+class <= mem || p.diskBy[owner]+size <= disk
}

// OwnerShareBytes is an owner's bound in memory, in bytes (0: none).
func (p *Pool) OwnerShareBytes() int64 { return p.share(p.budget) }

// share is an owner's bound within budget (0: none).
func (p *Pool) share(budget int64) int64 {
	if p.OwnerShare <= 0 || p.OwnerShare >= 1 || budget <= 0 {
		return 0
	}
	return max(int64(float64(budget)*p.OwnerShare), 1)
}

// hold adds n bytes (negative: releases) to what owner holds in m.
func hold(m *map[string]int64, owner string, n int64) {
	if *m == nil {
		*m = map[string]int64{}
	}
	if (*m)[owner] += n; (*m)[owner] <= 0 {
		delete(*m, owner)
	}
}

// Fill reads exactly size bytes of r into a new buffer. Waiting for memory
// ends with ctx too (the part's deadline), and the part is then spilled.
func (p *Pool) Fill(ctx context.Context, r io.Reader, size int64) (Buffer, error) {
	class := slabClass(size)
	owner := ownerOf(ctx)
	if p.acquire(ctx, owner, class) {
		slab := p.slab(class)
		n, err := io.ReadFull(r, (*slab)[:size])
		if err != nil {
			p.putSlab(slab)
			p.releaseMem(owner, class)
			return nil, readErr(err, n, size)
		}
		return &memBuffer{Reader: bytes.NewReader((*slab)[:size]), pool: p, slab: slab, class: class, owner: owner}, nil
	}
	return p.fillDisk(owner, r, size)
}

// fillDisk receives a part that memory has no room for into a spill file.
func (p *Pool) fillDisk(owner string, r io.Reader, size int64) (Buffer, error) {
	if err := p.reserveDisk(owner, size); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(p.spillDir, "part-*")
	if err != nil {
		p.releaseDisk(owner, size)
		return nil, fmt.Errorf("spill file: %w", err)
	}
	_ = os.Remove(f.Name()) // unlinked at once: nothing is left behind, even on a crash
	n, err := io.CopyN(f, r, size)
	if err != nil {
		_ = f.Close()
		p.releaseDisk(owner, size)
		return nil, readErr(err, int(n), size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		p.releaseDisk(owner, size)
		return nil, err
	}
	p.mu.Lock()
	p.spilled++
	p.mu.Unlock()
	return &fileBuffer{File: f, pool: p, size: size, owner: owner}, nil
}

func (p *Pool) reserveDisk(owner string, size int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if share := p.share(p.SpillBudget); share > 0 && p.diskBy[owner]+size > share {
		return ErrOwnerShare
	}
	if p.SpillBudget > 0 && p.onDisk+size > p.SpillBudget {
		return ErrSpillBudget
	}
	p.onDisk += size
	hold(&p.diskBy, owner, size)
	return nil
}

func (p *Pool) releaseDisk(owner string, size int64) {
	p.mu.Lock()
	p.onDisk -= size
	hold(&p.diskBy, owner, -size)
	p.mu.Unlock()
}

// acquire takes size bytes of the budget for owner, waiting up to
// WaitForMemory; never past the owner's share (its part spills instead).
func (p *Pool) acquire(ctx context.Context, owner string, size int64) bool {
	if size > p.budget {
		return false
	}
	share := p.share(p.budget)
	p.mu.Lock()
	over := share > 0 && p.memBy[owner]+size > share
	if !over {
		// Counted before the wait: two parts of one owner waiting at once
		// must not both fit in what is left of its share.
		hold(&p.memBy, owner, size)
	}
	p.mu.Unlock()
	if over {
		return false
	}
	if p.sem.TryAcquire(size) {
		return true
	}
	if p.WaitForMemory > 0 {
		p.mu.Lock()
		p.waited++
		p.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, p.WaitForMemory)
		defer cancel()
		if p.sem.Acquire(wctx, size) == nil {
			return true
		}
	}
	p.mu.Lock()
	hold(&p.memBy, owner, -size)
	p.mu.Unlock()
	return false
}

// releaseMem gives back size bytes of memory owner held.
func (p *Pool) releaseMem(owner string, size int64) {
	p.sem.Release(size)
	p.mu.Lock()
	hold(&p.memBy, owner, -size)
	p.mu.Unlock()
}

// Stats is what the pool has done so far (for metrics and tests).
type Stats struct {
	// Spilled and Waited count parts that went to disk and parts that had to
	// wait for memory (a waiting part may still spill).
	Spilled, Waited int64
	// InUseBytes is the memory held by parts in flight now.
	InUseBytes int64
	// SpilledBytes is the disk held by spilled parts in flight now.
	SpilledBytes int64
	// AllocatedBytes is what slabs were ever made of; reused slabs add nothing.
	AllocatedBytes int64
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Spilled: p.spilled, Waited: p.waited, InUseBytes: p.inUse, SpilledBytes: p.onDisk, AllocatedBytes: p.allocated}
}

func readErr(err error, n int, size int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: got %d of %d bytes", ErrShortBody, n, size)
	}
	return err
}

// slabClass is the size of the slab that holds a part of size bytes: a whole
// number of MiB (a power of two below 1 MiB, at least 4 KiB). Parts of nearby
// sizes (the last parts of files) then reuse each other's slabs instead of
// each mapping one of its own: memory grows with churn of odd sizes more than
// with the parts in flight. The budget counts classes, so memory stays within
// it.
func slabClass(size int64) int64 {
	const mib = 1 << 20
	if size >= mib {
		return (size + mib - 1) / mib * mib
	}
	c := int64(4 << 10)
	for c < size {
		c *= 2
	}
	return c
}

func (p *Pool) slab(size int64) *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.residentChanged()
	p.inUse += size
	if b := pop(p.free, size); b != nil {
		p.freeBytes -= size
		return b
	}
	if b := pop(p.cold, size); b != nil {
		p.coldBytes -= size
		return b
	}
	// Make room: drop free slabs of other sizes until a new one fits the budget.
	for sz, list := range p.free {
		for len(list) > 0 && p.freeBytes+p.inUse > p.budget {
			p.toCold(list[len(list)-1])
			list = list[:len(list)-1]
			p.freeBytes -= sz
		}
		p.free[sz] = list
	}
	p.allocated += size
	if b, ok := mapSlab(size); ok {
		return b
	}
	b := make([]byte, size) // no mapping to be had: the heap still works
	return &b
}

func (p *Pool) putSlab(b *[]byte) {
	size := int64(len(*b))
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.residentChanged()
	p.inUse -= size
	if p.freeBytes+size > p.retained() || p.freeBytes+size+p.inUse > p.budget {
		p.toCold(b)
		return
	}
	if p.free == nil {
		p.free = map[int64][]*[]byte{}
	}
	p.free[size] = append(p.free[size], b)
	p.freeBytes += size
}

// retained is how many bytes of free slabs stay resident for the next parts
// (the rest give their pages back): a quarter of the budget, enough for a
// steady stream of parts to reuse memory without faulting it in again, while
// an idle replica or one past a burst holds little more than its parts in
// flight.
func (p *Pool) retained() int64 { return p.budget / 4 }

// toCold gives a slab's pages back and keeps its mapping for a later part of
// the same size. Past twice the budget of cold mappings (address space only)
// the oldest are unmapped once nothing can still read them.
func (p *Pool) toCold(b *[]byte) {
	releasePages(*b)
	size := int64(len(*b))
	if p.cold == nil {
		p.cold = map[int64][]*[]byte{}
	}
	p.cold[size] = append(p.cold[size], b)
	p.coldBytes += size
	p.coldSince = append(p.coldSince, coldSlab{b: b, at: time.Now()})
	for len(p.coldSince) > 0 && p.coldBytes > 2*p.budget && time.Since(p.coldSince[0].at) > unmapAfter {
		old := p.coldSince[0]
		p.coldSince = p.coldSince[1:]
		sz := int64(len(*old.b))
		if i := slices.Index(p.cold[sz], old.b); i >= 0 {
			p.cold[sz] = slices.Delete(p.cold[sz], i, i+1)
			p.coldBytes -= sz
			unmapSlab(*old.b)
		}
	}
}

// unmapAfter is how long a cold slab is kept mapped at least: longer than any
// request body is read after the request returned.
const unmapAfter = 5 * time.Minute

type coldSlab struct {
	b  *[]byte
	at time.Time
}

func pop(m map[int64][]*[]byte, size int64) *[]byte {
	list := m[size]
	if len(list) == 0 {
		return nil
	}
	b := list[len(list)-1]
	m[size] = list[:len(list)-1]
	return b
}

func (p *Pool) residentChanged() {
	if p.OnResident != nil {
		p.OnResident(p.inUse + p.freeBytes)
	}
}

type memBuffer struct {
	*bytes.Reader
	pool  *Pool
	slab  *[]byte
	class int64
	owner string
	once  sync.Once
}

func (b *memBuffer) Close() error {
	b.once.Do(func() {
		b.pool.putSlab(b.slab)
		b.pool.releaseMem(b.owner, b.class)
	})
	return nil
}
func (b *memBuffer) Spilled() bool { return false }

type fileBuffer struct {
	*os.File
	pool   *Pool
	size   int64
	owner  string
	closed bool
}

func (b *fileBuffer) Spilled() bool { return true }

// Close removes the (unlinked) spill file and gives its bytes back to the
// spill budget.
func (b *fileBuffer) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.pool.releaseDisk(b.owner, b.size)
	return b.File.Close()
}
