package partbuf

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// benchmarkFill holds an 8 MiB part (the part handler's copy) and drains it
// as the S3 client would, with the given memory budget.
func benchmarkFill(b *testing.B, budget int64) {
	p := New(budget, b.TempDir())
	data := make([]byte, 8<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf, err := p.Fill(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, buf)
		buf.Close()
	}
}

func BenchmarkFillInMemory(b *testing.B) { benchmarkFill(b, 256<<20) }

func BenchmarkFillSpilled(b *testing.B) { benchmarkFill(b, 1) }
