// Package partbuf holds a part's bytes between the client and S3. A part is
// read whole before it is sent so the S3 client can rewind and retry it on a
// transient error without the client resending, and so SigV4 can hash it.
//
// Memory is bounded by a byte budget shared by all parts in flight: a part
// whose size fits in what is left of the budget is held in memory, any other
// is spilled to a temporary file in the spill directory. Memory therefore
// stays at most budget + small per-request overhead whatever the concurrency;
// disk use is bounded by (concurrency − budget/partSize) × partSize.
package partbuf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Pool hands out buffers within a memory budget.
type Pool struct {
	budget   int64
	sem      *semaphore.Weighted
	spillDir string

	mu      sync.Mutex
	spilled int64 // parts spilled so far (for metrics and tests)
	// Free slabs by size, reused between parts. Slabs in use plus free slabs
	// never exceed the budget, so the buffers' memory is bounded by the budget
	// itself, not by the budget plus whatever a pool or the GC holds on to.
	free      map[int64][]*[]byte
	freeBytes int64
	inUse     int64
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

// Fill reads exactly size bytes of r into a new buffer. Hashers, if any, see
// every byte as it is read (to check client checksums in one pass).
func (p *Pool) Fill(r io.Reader, size int64, hashers ...io.Writer) (Buffer, error) {
	if hashers != nil {
		r = io.TeeReader(r, io.MultiWriter(hashers...))
	}
	if size <= p.budget && p.sem.TryAcquire(size) {
		slab := p.slab(size)
		n, err := io.ReadFull(r, (*slab)[:size])
		if err != nil {
			p.putSlab(slab)
			p.sem.Release(size)
			return nil, readErr(err, n, size)
		}
		return &memBuffer{Reader: bytes.NewReader((*slab)[:size]), pool: p, slab: slab, size: size}, nil
	}
	f, err := os.CreateTemp(p.spillDir, "part-*")
	if err != nil {
		return nil, fmt.Errorf("spill file: %w", err)
	}
	_ = os.Remove(f.Name()) // unlinked at once: nothing is left behind, even on a crash
	n, err := io.CopyN(f, r, size)
	if err != nil {
		f.Close()
		return nil, readErr(err, int(n), size)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	p.mu.Lock()
	p.spilled++
	p.mu.Unlock()
	return &fileBuffer{File: f}, nil
}

// Spilled returns how many parts have gone to disk.
func (p *Pool) Spilled() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spilled
}

func readErr(err error, n int, size int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: got %d of %d bytes", ErrShortBody, n, size)
	}
	return err
}

func (p *Pool) slab(size int64) *[]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse += size
	if list := p.free[size]; len(list) > 0 {
		b := list[len(list)-1]
		p.free[size] = list[:len(list)-1]
		p.freeBytes -= size
		return b
	}
	// Make room: drop free slabs of other sizes until a new one fits the budget.
	for sz, list := range p.free {
		for len(list) > 0 && p.freeBytes+p.inUse > p.budget {
			list = list[:len(list)-1]
			p.freeBytes -= sz
		}
		p.free[sz] = list
	}
	b := make([]byte, size)
	return &b
}

func (p *Pool) putSlab(b *[]byte) {
	size := int64(len(*b))
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse -= size
	if p.freeBytes+size+p.inUse > p.budget {
		return // let the GC have it
	}
	if p.free == nil {
		p.free = map[int64][]*[]byte{}
	}
	p.free[size] = append(p.free[size], b)
	p.freeBytes += size
}

type memBuffer struct {
	*bytes.Reader
	pool *Pool
	slab *[]byte
	size int64
	once sync.Once
}

func (b *memBuffer) Close() error {
	b.once.Do(func() {
		b.pool.putSlab(b.slab)
		b.pool.sem.Release(b.size)
	})
	return nil
}
func (b *memBuffer) Spilled() bool { return false }

type fileBuffer struct{ *os.File }

func (b *fileBuffer) Spilled() bool { return true }
