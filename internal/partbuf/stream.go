package partbuf

import (
	"context"
	"errors"
	"io"
	"sync"
)

// Stream is a part whose bytes are still arriving: it is read (and sent to
// S3) while the client's body is being received, so one connection's part
// costs about one transfer time instead of two. Reads block until the bytes
// they ask for have arrived; a Seek back to the start (the S3 client's retry)
// reads the same bytes again from memory, waiting only for those not yet
// received. A part that does not fit in memory is received whole first (onto
// disk), as Fill does.
type Stream interface {
	Buffer
	// Received is closed once the whole body has been read, or failed.
	Received() <-chan struct{}
	// Err is the body's read error, once Received is closed (nil: complete).
	Err() error
}

// Stream starts receiving exactly size bytes of r and returns at once (after
// waiting for memory as Fill does). The caller must Close the stream; Close
// waits for the body to be received or to fail.
func (p *Pool) Stream(ctx context.Context, r io.Reader, size int64) (Stream, error) {
	class := slabClass(size)
	owner := ownerOf(ctx)
	if !p.acquire(ctx, owner, class) {
		b, err := p.fillDisk(owner, r, size)
		if err != nil {
			return nil, err
		}
		return &filled{Buffer: b}, nil
	}
	s := &streamBuffer{pool: p, slab: p.slab(class), class: class, size: size, owner: owner, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.receive(r)
	return s, nil
}

// filled is a buffer received whole before it was handed out.
type filled struct{ Buffer }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (f *filled) Received() <-chan struct{} { return closedChan }
func (f *filled) Err() error                { return nil }

// wakeBatch is how many new bytes wake a reader waiting for the body.
const wakeBatch = 256 << 10

type streamBuffer struct {
	pool  *Pool
	slab  *[]byte
	class int64
	size  int64
	owner string
	done  chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	arrived int64 // bytes of the body received so far
	err     error // the body's read error, set before done is closed
	off     int64 // the reader's position
	closed  bool
}

// receive reads the body into the slab, waking readers as bytes arrive.
func (s *streamBuffer) receive(r io.Reader) {
	buf := (*s.slab)[:s.size]
	var err error
	var signalled int64
	// This goroutine alone writes s.arrived, so it reads it without the lock;
	// readers take the lock.
	for s.arrived < s.size && err == nil {
		var n int
		n, err = r.Read(buf[s.arrived:])
		s.mu.Lock()
		s.arrived += int64(n)
		arrived := s.arrived
		s.mu.Unlock()
		// Readers are woken per wakeBatch bytes, not per network read (a few
		// KiB each): at 64 parts in flight, a wake-up per read cost more CPU
		// than the bytes.
		if arrived-signalled >= wakeBatch {
			signalled = arrived
			s.cond.Broadcast()
		}
	}
	s.mu.Lock()
	if s.arrived < s.size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		s.err = readErr(err, int(s.arrived), s.size)
	}
	s.mu.Unlock()
	close(s.done)
	s.cond.Broadcast()
}

func (s *streamBuffer) Received() <-chan struct{} { return s.done }

func (s *streamBuffer) Err() error {
	<-s.done
	return s.err
}

func (s *streamBuffer) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.off >= s.arrived && s.arrived < s.size && s.err == nil && !s.isDone() {
		s.cond.Wait()
	}
	switch {
	case s.off < s.arrived:
		n := copy(p, (*s.slab)[s.off:s.arrived])
		s.off += int64(n)
		return n, nil
	case s.off >= s.size:
		return 0, io.EOF
	case s.err != nil:
		return 0, s.err
	}
	return 0, io.ErrUnexpectedEOF
}

// WireReader reads the part from its start for one attempt to send it, with
// a position of its own (an earlier attempt the transport is still writing
// out cannot move it), and can write the slab straight to a connection
// (WriteTo: no copy through a 32 KiB buffer, one write per run of arrived
// bytes). Once the stream is closed it reads nothing more: the slab may hold
// another part by then.
func (s *streamBuffer) WireReader() io.Reader { return &wireReader{s: s} }

var errStreamClosed = errors.New("partbuf: the part's stream is closed")

type wireReader struct {
	s   *streamBuffer
	off int64
}

// next waits for bytes past the reader's position and returns at most limit of
// them (nil at the end).
func (r *wireReader) next(limit int64) ([]byte, error) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for r.off >= s.arrived && s.arrived < s.size && s.err == nil && !s.isDone() && !s.closed {
		s.cond.Wait()
	}
	switch {
	case s.closed:
		return nil, errStreamClosed
	case r.off < s.arrived:
		end := min(s.arrived, r.off+limit)
		return (*s.slab)[r.off:end], nil
	case r.off >= s.size:
		return nil, io.EOF
	case s.err != nil:
		return nil, s.err
	}
	return nil, io.ErrUnexpectedEOF
}

func (r *wireReader) Read(p []byte) (int, error) {
	b, err := r.next(int64(len(p)))
	n := copy(p, b)
	r.off += int64(n)
	return n, err
}

// WriteTo writes what has arrived in runs of up to wireRun bytes, each
// straight from the slab.
func (r *wireReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		b, err := r.next(wireRun)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(b)
		r.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// Remaining is how many bytes the reader has yet to give.
func (r *wireReader) Remaining() int64 { return r.s.size - r.off }

// wireRun bounds one write from the slab, so a closed stream is noticed
// between writes.
const wireRun = 4 << 20

func (s *streamBuffer) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *streamBuffer) Seek(offset int64, whence int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = s.off + offset
	case io.SeekEnd:
		abs = s.size + offset
	default:
		return 0, errors.New("partbuf: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("partbuf: negative position")
	}
	s.off = abs
	return abs, nil
}

// Close waits for the body's reader to stop writing into the slab, then gives
// the memory back.
func (s *streamBuffer) Close() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cond.Broadcast()
	s.pool.putSlab(s.slab)
	s.pool.releaseMem(s.owner, s.class)
	return nil
}

func (s *streamBuffer) Spilled() bool { return false }
