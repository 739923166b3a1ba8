package objectstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"testing"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
)

// wireBody is a part body as partbuf's stream is: seekable for the SDK, and
// able to hand each attempt a reader that writes from where the bytes lie.
// It records the writes that reader makes to the connection.
type wireBody struct {
	*bytes.Reader
	data []byte

	mu     sync.Mutex
	writes []int
}

func (b *wireBody) WireReader() io.Reader { return &wireReader{b: b} }

type wireReader struct {
	b   *wireBody
	off int
}

func (r *wireReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b.data) {
		return 0, io.EOF
	}
	n := copy(p, r.b.data[r.off:])
	r.off += n
	return n, nil
}

func (r *wireReader) WriteTo(w io.Writer) (int64, error) {
	if r.off >= len(r.b.data) {
		return 0, nil
	}
	n, err := w.Write(r.b.data[r.off:])
	r.b.mu.Lock()
	r.b.writes = append(r.b.writes, n)
	r.b.mu.Unlock()
	r.off += n
	return int64(n), err
}

func (r *wireReader) Remaining() int64 { return int64(len(r.b.data) - r.off) }

// A part body that offers a wire reader goes to S3 (plain HTTP, as in the
// cluster's own network) in one write from where it lies, not copied through
// net/http's 32 KiB buffer, and S3 stores exactly its bytes.
func TestPartBodiesAreWrittenFromWhereTheyLie(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := s3srv.Client()
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	body := &wireBody{Reader: bytes.NewReader(data), data: data}
	key := "wire/part"
	id, err := s.CreateMultipartUpload(ctx, key, "application/pdf", "")
	if err != nil {
		t.Fatal(err)
	}
	etag, err := s.UploadPart(ctx, key, id, 1, body, int64(len(data)), objectstore.Checksums{})
	if err != nil {
		t.Fatal(err)
	}
	body.mu.Lock()
	writes := append([]int(nil), body.writes...)
	body.mu.Unlock()
	// net/http may read the first few KiB itself to fill its header buffer.
	if len(writes) != 1 || writes[0] < len(data)-(64<<10) {
		t.Errorf("the body went out in writes of %v bytes, want one write of nearly %d", writes, len(data))
	}
	if _, _, err := s.CompleteMultipartUpload(ctx, key, id, []objectstore.PartInfo{{PartNumber: 1, ETag: etag}}, ""); err != nil {
		t.Fatal(err)
	}
	obj, err := s.GetObject(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("S3 holds %d bytes (%v) that differ from the %d sent", len(got), err, len(data))
	}
}
