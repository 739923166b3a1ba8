package partbuf

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkFillInMemory: holding an 8 MiB part within the budget (the part
// handler's copy), then draining it as the S3 client would.
func BenchmarkFillInMemory(b *testing.B) {
	p := New(256<<20, b.TempDir())
	data := make([]byte, 8<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf, err := p.Fill(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, buf)
		buf.Close()
	}
}

func BenchmarkFillSpilled(b *testing.B) {
	p := New(1, b.TempDir())
	data := make([]byte, 8<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf, err := p.Fill(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, buf)
		buf.Close()
	}
}
