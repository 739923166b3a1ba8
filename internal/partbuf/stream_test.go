package partbuf

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/synctest"
)

// A stream hands out bytes as they arrive: a reader gets the first half
// before the second is written, and a Seek back to the start reads it all
// again from memory (the writer sends each byte once).
func TestStreamReadsBytesAsTheyArriveAndRereadsFromMemory(t *testing.T) {
	t.Parallel()
	p := New(8<<20, t.TempDir())
	data := make([]byte, 3<<20)
	_, _ = rand.Read(data)
	pr, pw := io.Pipe()
	s, err := p.Stream(context.Background(), pr, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	go func() { _, _ = pw.Write(data[:half]) }()
	got := make([]byte, half)
	if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, data[:half]) {
		t.Fatalf("first half: %v", err)
	}
	select {
	case <-s.Received():
		t.Fatal("stream says received before the second half was written")
	default:
	}
	go func() { _, _ = pw.Write(data[half:]); _ = pw.Close() }()
	rest, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(rest, data[half:]) {
		t.Fatalf("second half: %d bytes, %v", len(rest), err)
	}
	if _, err := s.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	again, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(again, data) {
		t.Fatalf("after Seek(0): %d bytes, %v", len(again), err)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.InUseBytes != 0 {
		t.Fatalf("%d bytes still in use after Close", st.InUseBytes)
	}
}

// A body that ends early fails the reader waiting for the missing bytes,
// with ErrShortBody.
func TestStreamOfAShortBodyFailsItsReader(t *testing.T) {
	t.Parallel()
	p := New(8<<20, t.TempDir())
	pr, pw := io.Pipe()
	s, err := p.Stream(context.Background(), pr, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go func() { _, _ = pw.Write(make([]byte, 1000)); _ = pw.Close() }()
	n, err := io.Copy(io.Discard, s)
	if n != 1000 || !errors.Is(err, ErrShortBody) || !errors.Is(s.Err(), ErrShortBody) {
		t.Fatalf("read %d bytes, err %v, stream err %v; want 1000 and ErrShortBody", n, err, s.Err())
	}
}

// Close waits for the body's reader before the memory is reused: the slab is
// still being written while the client sends. In a synctest bubble,
// synctest.Wait returns only once every goroutine (Close's included) is
// blocked, so a Close that did not wait would be seen, not raced.
func TestStreamCloseWaitsForTheBody(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := New(1<<20, dir)
		pr, pw := io.Pipe()
		s, err := p.Stream(context.Background(), pr, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() { _ = s.Close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Error("Close returned while the body was still being received")
		default:
		}
		_ = pw.CloseWithError(errors.New("client went away"))
		<-closed
		if st := p.Stats(); st.InUseBytes != 0 {
			t.Fatalf("%d bytes in use after Close", st.InUseBytes)
		}
	})
}

// A part that finds no memory is received whole onto disk, and is complete
// when handed out.
func TestStreamWithoutMemorySpillsTheWholePart(t *testing.T) {
	t.Parallel()
	p := New(1<<20, t.TempDir())
	data := make([]byte, 2<<20)
	_, _ = rand.Read(data)
	s, err := p.Stream(context.Background(), bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Spilled() || s.Err() != nil {
		t.Fatalf("spilled %v, err %v", s.Spilled(), s.Err())
	}
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
}

// Each wire reader (one per attempt to send the part) starts at the part's
// start whatever the others and the stream's own position did, writes the
// bytes straight from the slab as they arrive, and reads nothing once the
// stream is closed (its slab may hold another part by then).
func TestWireReadersAreIndependentAndEndAtClose(t *testing.T) {
	t.Parallel()
	p := New(16<<20, t.TempDir())
	data := make([]byte, 5<<20)
	_, _ = rand.Read(data)
	pr, pw := io.Pipe()
	st, err := p.Stream(context.Background(), pr, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	s := st.(interface{ WireReader() io.Reader })
	first := s.WireReader()
	go func() {
		for off := 0; off < len(data); off += 256 << 10 {
			_, _ = pw.Write(data[off : off+256<<10])
		}
		_ = pw.Close()
	}()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(first, head); err != nil || !bytes.Equal(head, data[:1<<20]) {
		t.Fatalf("the first attempt's first MiB: %v", err)
	}
	second := s.WireReader() // a retry: from the start again
	var out bytes.Buffer
	n, err := second.(io.WriterTo).WriteTo(&out)
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("the second attempt wrote %d bytes (%v), want the %d of the part", n, err, len(data))
	}
	if rest, err := io.ReadAll(first); err != nil || !bytes.Equal(rest, data[1<<20:]) {
		t.Fatalf("the first attempt went on from the second's position: %d bytes, %v", len(rest), err)
	}
	late := s.WireReader()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := late.Read(make([]byte, 10)); n != 0 || !errors.Is(err, errStreamClosed) {
		t.Fatalf("a read after Close: %d bytes, %v; want none and errStreamClosed", n, err)
	}
}
