package objectstore_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mocs-dev/upload-operator/internal/objectstore"
	"github.com/mocs-dev/upload-operator/internal/testenv"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
)

var s3srv *localenv.S3

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Needs{S3: true}, func(e *testenv.Env) error { s3srv = e.S3; return nil })
}

// payloadRecorder passes every request to the real S3 and remembers how each
// part upload's payload was signed.
type payloadRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (p *payloadRecorder) handler(t *testing.T) http.Handler {
	target, err := url.Parse(s3srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("partNumber") {
			p.mu.Lock()
			p.seen = append(p.seen, r.Header.Get("X-Amz-Content-Sha256"))
			p.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	})
}

func (p *payloadRecorder) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[len(p.seen)-1]
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Part bodies are never sent with neither TLS nor a signature: over plain
// http to another host they are hashed into the signature unless the client
// sent a digest S3 verifies that an attacker on the path cannot match
// (Content-MD5, SHA-256; a CRC is not one); over https, or to loopback (no
// network path), UNSIGNED-PAYLOAD is used. S3 accepts every one.
func TestUnsignedPayloadOnlyWhereTheBodyIsProtected(t *testing.T) {
	rec := &payloadRecorder{}
	plain := httptest.NewServer(rec.handler(t))
	defer plain.Close()
	// Another host over plain http: a name that is not loopback, dialled to
	// the recorder.
	remote := "http://s3.example.test:" + plain.URL[strings.LastIndex(plain.URL, ":")+1:]
	toPlain := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, plain.Listener.Addr().String())
	}}}
	tlsSrv := httptest.NewTLSServer(rec.handler(t))
	defer tlsSrv.Close()
	body := bytes.Repeat([]byte("castle "), 1000)
	sum := md5.Sum(body)
	sha := sha256.Sum256(body)
	crc := binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(body))
	for _, tc := range []struct {
		name     string
		endpoint string
		client   *http.Client
		checksum objectstore.Checksums
		unsigned bool
	}{
		{"http, no checksum: hashed", remote, toPlain, objectstore.Checksums{}, false},
		{"http with Content-MD5: unsigned", remote, toPlain, objectstore.Checksums{ContentMD5: base64.StdEncoding.EncodeToString(sum[:])}, true},
		{"http with a SHA-256: unsigned", remote, toPlain, objectstore.Checksums{SHA256: base64.StdEncoding.EncodeToString(sha[:])}, true},
		{"http with only a CRC32: hashed", remote, toPlain, objectstore.Checksums{CRC32: base64.StdEncoding.EncodeToString(crc[:])}, false},
		{"http to loopback: unsigned", plain.URL, nil, objectstore.Checksums{}, true},
		{"https: unsigned", tlsSrv.URL, tlsSrv.Client(), objectstore.Checksums{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := s3srv.Options()
			o.Endpoint, o.UnsignedPayload = tc.endpoint, true
			if tc.client != nil {
				o.HTTPClient = tc.client
			}
			s := objectstore.New(o)
			ctx := context.Background()
			key := "payload/" + tc.name
			id, err := s.CreateMultipartUpload(ctx, key, "application/pdf", "")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.AbortMultipartUpload(ctx, key, id) }()
			if _, err := s.UploadPart(ctx, key, id, 1, bytes.NewReader(body), int64(len(body)), tc.checksum); err != nil {
				t.Fatalf("S3 refused the part: %v", err)
			}
			got := rec.last()
			if tc.unsigned && got != "UNSIGNED-PAYLOAD" || !tc.unsigned && !sha256Hex.MatchString(got) {
				t.Fatalf("x-amz-content-sha256 = %q, want unsigned=%v", got, tc.unsigned)
			}
		})
	}
}
