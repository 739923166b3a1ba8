package uploads_test

import (
	"context"
	"crypto/md5" //nolint:gosec // Content-MD5 is what S3 verifies, not a security hash
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/uploads"
)

// s3Tap is a TCP proxy in front of versitygw that counts the bytes sent
// towards S3 and can cut the first connection after some bytes (a dropped
// connection mid-part).
type s3Tap struct {
	ln       net.Listener
	upstream string
	sent     atomic.Int64
	cutAfter int64 // >0: the first connection is reset after this many bytes
	cutOnce  sync.Once
	cuts     atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newS3Tap(t *testing.T, cutAfter int64) *s3Tap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &s3Tap{ln: ln, upstream: s3srv.Addr, cutAfter: cutAfter}
	tap.wg.Add(1)
	go tap.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		tap.mu.Lock()
		for _, c := range tap.conns {
			_ = c.Close() // idle keep-alive connections would hold the relays
		}
		tap.mu.Unlock()
		tap.wg.Wait()
	})
	return tap
}

func (p *s3Tap) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.relay(c)
		}()
	}
}

func (p *s3Tap) relay(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	limit := int64(-1)
	p.cutOnce.Do(func() { limit = p.cutAfter })
	go func() { _, _ = io.Copy(c, up); _ = c.Close(); _ = up.Close() }()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if limit > 0 && n+int64(k) > limit {
				p.cuts.Add(1)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // a reset, as a dropped connection looks
				}
				return
			}
			if _, werr := up.Write(buf[:k]); werr != nil {
				return
			}
			n += int64(k)
			p.sent.Add(int64(k))
		}
		if err != nil {
			return
		}
	}
}

func (p *s3Tap) endpoint() string { return "http://" + p.ln.Addr().String() }

func serviceThrough(t *testing.T, tap *s3Tap) *uploads.Service {
	t.Helper()
	svc, _ := newService(t)
	o := s3srv.Options()
	o.Endpoint = tap.endpoint()
	o.UnsignedPayload = true
	svc.S3 = objectstore.New(o)
	return svc
}

func contentMD5(b []byte) string {
	sum := md5.Sum(b) //nolint:gosec // see the import
	return base64.StdEncoding.EncodeToString(sum[:])
}

// A part is sent to S3 while it is being received: with the first 3 MiB of a
// 5 MiB part sent by the client, S3 has already been sent most of them.
func TestPartReachesS3WhileItsBodyArrives(t *testing.T) {
	t.Parallel()
	tap := newS3Tap(t, 0)
	svc := serviceThrough(t, tap)
	ts := activate(t, svc, 5<<20+1)
	part := ts.data[0][:5<<20]
	pr, pw := io.Pipe()
	type result struct {
		etag string
		err  error
	}
	done := make(chan result, 1)
	before := tap.sent.Load()
	go func() {
		p, err := svc.StorePart(context.Background(), uploads.PartUpload{Session: ts.act.Session, File: ts.act.Files[0],
			PartNumber: 1, Body: pr, Size: int64(len(part)), Checksums: objectstore.Checksums{ContentMD5: contentMD5(part)}})
		done <- result{p.ETag, err}
	}()
	if _, err := pw.Write(part[:3<<20]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for tap.sent.Load()-before < 2<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("S3 was sent %d bytes of the 3 MiB received: the part is held until its body is complete", tap.sent.Load()-before)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := pw.Write(part[3<<20:]); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	assertPartHolds(t, svc, ts, 1, part)
}

// A connection to S3 dropped in the middle of a part is retried from the
// bytes in memory: the client sends the part once, and S3 ends up with it.
func TestPartRetriedFromMemoryWhenS3DropsTheConnection(t *testing.T) {
	t.Parallel()
	tap := newS3Tap(t, 1<<20)
	svc := serviceThrough(t, tap)
	ts := activate(t, svc, 5<<20+1)
	part := ts.data[0][:5<<20]
	sent := &countingReader{r: &slowReader{data: part, chunk: 256 << 10}}
	p, err := svc.StorePart(context.Background(), uploads.PartUpload{Session: ts.act.Session, File: ts.act.Files[0],
		PartNumber: 1, Body: sent, Size: int64(len(part)), Checksums: objectstore.Checksums{ContentMD5: contentMD5(part)}})
	if err != nil {
		t.Fatal(err)
	}
	if tap.cuts.Load() != 1 || sent.n.Load() != int64(len(part)) || p.SizeBytes != int64(len(part)) {
		t.Fatalf("connections cut %d, bytes read from the client %d of %d", tap.cuts.Load(), sent.n.Load(), len(part))
	}
	assertPartHolds(t, svc, ts, 1, part)
}

// assertPartHolds reads the session's file back after finalizing it with the
// remaining part, and compares part n.
func assertPartHolds(t *testing.T, svc *uploads.Service, ts *testSession, n int, want []byte) {
	t.Helper()
	f := ts.act.Files[0]
	parts, err := svc.S3.ListParts(context.Background(), f.S3Key, f.S3UploadID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if int(p.PartNumber) == n {
			if p.Size != int64(len(want)) || p.ETag != `"`+hexMD5(want)+`"` {
				t.Fatalf("S3 holds part %d as %d bytes, ETag %s; want %d bytes, MD5 %s", n, p.Size, p.ETag, len(want), hexMD5(want))
			}
			return
		}
	}
	t.Fatalf("S3 holds no part %d", n)
}

func hexMD5(b []byte) string {
	sum := md5.Sum(b) //nolint:gosec // see the import
	return hex.EncodeToString(sum[:])
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// slowReader hands out data a chunk at a time, pausing between chunks like a
// client on a modest link, so the part is still arriving when S3 is sent it.
type slowReader struct {
	data  []byte
	chunk int
	off   int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.off >= len(s.data) {
		return 0, io.EOF
	}
	if s.off > 0 {
		time.Sleep(2 * time.Millisecond)
	}
	n := copy(p[:min(len(p), s.chunk)], s.data[s.off:])
	s.off += n
	return n, nil
}
