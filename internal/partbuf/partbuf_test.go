package partbuf

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"
)

func TestBudgetKeepsPartsInMemoryThenSpills(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := New(10, dir)
	data := make([]byte, 6)
	_, _ = rand.Read(data)

	a, err := p.Fill(bytes.NewReader(data), 6)
	if err != nil || a.Spilled() {
		t.Fatalf("first part: spilled=%v err=%v, want in memory", a != nil && a.Spilled(), err)
	}
	b, err := p.Fill(bytes.NewReader(data), 6) // 6+6 > 10: over the budget
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
	c, err := p.Fill(bytes.NewReader(data), 6) // budget released by a.Close
	if err != nil || c.Spilled() {
		t.Fatalf("after release: spilled=%v err=%v", c.Spilled(), err)
	}
	b.Close()
	c.Close()
	if p.Spilled() != 1 {
		t.Fatalf("spilled count = %d", p.Spilled())
	}
}

func TestShortBody(t *testing.T) {
	t.Parallel()
	p := New(100, t.TempDir())
	for _, size := range []int64{10, 1000} { // in memory and spilled
		if _, err := p.Fill(bytes.NewReader(make([]byte, 5)), size); !errors.Is(err, ErrShortBody) {
			t.Fatalf("size %d: err = %v, want ErrShortBody", size, err)
		}
	}
	// The failed in-memory fill gave its budget back.
	if b, err := p.Fill(bytes.NewReader(make([]byte, 100)), 100); err != nil || b.Spilled() {
		t.Fatalf("budget leaked: %v", err)
	}
}
