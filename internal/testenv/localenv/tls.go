package localenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mocs-dev/upload-operator/internal/servingcert"
)

// TLS is a certificate authority of the local environment's own and a server
// certificate it signed, as PEM files: `make dev` serves the upload API with
// them and points clients at the CA; tests do the same. The certificates come
// from servingcert, as the operator's own do.
type TLS struct {
	CAFile, CertFile, KeyFile string
	// Serial is the serial number of the server certificate now on disk.
	Serial *big.Int

	ca    *servingcert.Authority
	hosts []string
}

// NewTLS writes ca.crt, tls.crt and tls.key into dir: a CA and a server
// certificate for hosts (names or IP addresses).
func NewTLS(dir string, hosts ...string) (*TLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, _, err := servingcert.NewAuthority("upload-operator local CA", time.Now())
	if err != nil {
		return nil, err
	}
	t := &TLS{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"),
		ca: ca, hosts: hosts}
	if err := writeFileAtomic(t.CAFile, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return t, t.Issue()
}

// Issue writes a new server certificate and key (a new serial number), as a
// certificate rotation does.
func (t *TLS) Issue() error {
	cert, err := t.ca.Issue(t.hosts, time.Now())
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(t.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(t.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		return err
	}
	t.Serial = cert.Leaf.SerialNumber
	return nil
}

// writeFileAtomic writes via a temporary file and a rename: a reader (the
// operator's certificate watcher) never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ClientTrusting is an HTTP client that verifies servers against the PEM CA
// bundle at caFile.
func ClientTrusting(caFile string) (*http.Client, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}, nil
}
