package e2e

import (
	"context"
	"crypto/tls"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mocs-dev/upload-operator/internal/localenv"
	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

// With TLS_CERT_FILE and TLS_KEY_FILE the upload API is HTTPS only; a client
// that trusts the CA (the Go client through UPLOAD_API_CA_FILE, as `make dev`
// sets it) uploads as over HTTP; a renewed certificate on disk is served from
// the next handshake on, without a restart.
func TestUploadAPIOverTLS(t *testing.T) {
	certs, err := localenv.NewTLS(filepath.Join(t.TempDir(), "tls"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	trusting, err := localenv.ClientTrusting(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	rep := startReplicaWith(t, map[string]string{"TLS_CERT_FILE": certs.CertFile, "TLS_KEY_FILE": certs.KeyFile,
		"WATCH_NAMESPACE": "no-such-namespace"}, "https", trusting)
	if !strings.HasPrefix(rep.url, "https://") {
		t.Fatal(rep.url)
	}
	if resp, err := http.Get(strings.Replace(rep.url, "https://", "http://", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the upload API answered plain HTTP")
		}
	}

	// The Go client, pointed at the CA by UPLOAD_API_CA_FILE.
	t.Setenv("UPLOAD_API_CA_FILE", certs.CAFile)
	path := filepath.Join(t.TempDir(), "tls.pdf")
	if err := os.WriteFile(path, randomBytes(6<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c := upclient.New(rep.url, upclient.StaticToken(user(t).token))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, moc, err := c.UploadFiles(ctx, uniqueTitle("TLS Castle"), "", []string{path}, upclient.ReturnConflict); err != nil || !moc.Created {
		t.Fatalf("upload over TLS: %+v, %v", moc, err)
	}

	// Rotation.
	before := servedSerial(t, rep.url, certs.CAFile)
	if before.Cmp(certs.Serial) != 0 {
		t.Fatalf("served serial %s, want %s", before, certs.Serial)
	}
	if err := certs.Issue(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the renewed certificate to be served", func() (bool, string) {
		got := servedSerial(t, rep.url, certs.CAFile)
		return got.Cmp(certs.Serial) == 0, got.String()
	})
}

// servedSerial is the serial number of the certificate the server presents.
func servedSerial(t *testing.T, url, caFile string) *big.Int {
	t.Helper()
	c, err := localenv.ClientTrusting(caFile)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(url, "https://")
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host,
		c.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}
