package objectstore

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// A part body that can hand the transport its bytes without a copy
// (partbuf's stream): each attempt gets a reader of its own from the start.
type wireBody interface {
	WireReader() io.Reader
}

type wireBodyKey struct{}

// withWireBody marks ctx's S3 request as sending body, if it can be sent
// without a copy.
func withWireBody(ctx context.Context, body io.Reader) context.Context {
	if wb, ok := body.(wireBody); ok {
		return context.WithValue(ctx, wireBodyKey{}, wb)
	}
	return ctx
}

// wireClient gives each attempt of a marked request the part's wire reader
// as its body, in place of the SDK's wrapper of it. The SDK has read (for a
// payload hash) and rewound its own copy; the bytes are the same. net/http
// then hands that reader, under its Content-Length limit, to the
// connection's ReadFrom, and wireConn writes the part from where it lies.
// Through net/http's own 32 KiB copy buffer every byte would be copied once
// more and sent with a system call per 32 KiB (docs/performance.md, item 11).
type wireClient struct{ next aws.HTTPClient }

func (c wireClient) Do(req *http.Request) (*http.Response, error) {
	if wb, ok := req.Context().Value(wireBodyKey{}).(wireBody); ok && req.Body != nil && req.ContentLength > 0 &&
		!strings.Contains(req.Header.Get("Content-Encoding"), "aws-chunked") {
		if r, ok := wb.WireReader().(sizedWriterTo); ok && r.Remaining() == req.ContentLength {
			// Not io.NopCloser: net/http unwraps only its own wrappers, and
			// wireConn must find the wire reader itself under the limit.
			req.Body = wireReadCloser{r}
		}
	}
	return c.next.Do(req)
}

type wireReadCloser struct{ sizedWriterTo }

func (wireReadCloser) Close() error { return nil }

// wireConn is a plain connection to S3 that writes a part body straight from
// its slab. (Over TLS net/http writes through tls.Conn, which encrypts from a
// copy buffer either way.)
type wireConn struct{ net.Conn }

// sizedWriterTo is a wire reader: it reads, or writes all it has left.
type sizedWriterTo interface {
	io.Reader
	io.WriterTo
	Remaining() int64
}

func (c *wireConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if src, ok := lr.R.(sizedWriterTo); ok && src.Remaining() <= lr.N {
			n, err := src.WriteTo(c.Conn)
			lr.N -= n
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r) // splice or sendfile where the kernel can
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// wireDial wraps dial's plain connections in wireConn.
func wireDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &wireConn{Conn: c}, nil
	}
}
