package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mocs-dev/upload-operator/internal/servingcert"
	"github.com/mocs-dev/upload-operator/internal/testenv/localenv"
	upclient "github.com/mocs-dev/upload-operator/pkg/client"
)

// With TLS_CERT_FILE and TLS_KEY_FILE the upload API is HTTPS only; a client
// that trusts the CA (the Go client through UPLOAD_API_CA_FILE, as `make dev`
// sets it) uploads as over HTTP; a renewed certificate on disk is served from
// the next handshake on, without a restart.
func TestUploadAPIOverTLS(t *testing.T) {
	certs, trusting := loopbackTLS(t)
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

// Without cert-manager the operator signs its own certificate: the first
// replica creates the CA in TLS_CA_SECRET, every replica serves the upload API
// and /metrics with a certificate of that CA, and the CA's certificate alone
// is published in TLS_CA_CONFIGMAP, where a client or Prometheus verifies the
// operator by name (as the chart's ServiceMonitor does) without being able to
// read a key.
func TestOperatorSignsItsOwnCertificate(t *testing.T) {
	const ns = "own-ca"
	if o, err := kubectl(t, "create", "namespace", ns); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	apiName, metricsName := "upload-operator-upload-api."+ns+".svc", "upload-operator-metrics."+ns+".svc"
	env := map[string]string{"SESSION_NAMESPACE": ns, "WATCH_NAMESPACE": ns,
		"TLS_CA_SECRET": "upload-operator-tls-ca", "TLS_CA_CONFIGMAP": "upload-operator-ca",
		"TLS_DNS_NAMES": apiName + "," + metricsName}
	// Nothing to trust before the CA exists: the replica is awaited without
	// verification, and verified below against the published CA.
	unverified := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // verified below
	first := startReplicaWith(t, env, "https", unverified)
	ca := publishedCA(t, ns, "upload-operator-ca")
	second := startReplicaWith(t, env, "https", unverified)

	secret := mustKubectl(t, "-n", ns, "get", "secret", "upload-operator-tls-ca", "-o", "jsonpath={.data}")
	if !strings.Contains(secret, `"ca.key"`) {
		t.Fatalf("the CA's Secret keeps no key: %s", secret)
	}
	for _, rep := range []replica{first, second} {
		verifyServed(t, rep.url, apiName, ca)
		verifyServed(t, strings.TrimSuffix(rep.metrics, "/metrics"), metricsName, ca)
		// The name of one Service does not stand for the other's.
		if err := dialVerified(rep.url, "upload-operator-upload-api.other.svc", ca); err == nil {
			t.Errorf("%s: a certificate for a name it was not signed for was accepted", rep.url)
		}
		resp, err := scrapeVerified(rep.metrics, metricsName, ca, scraper(t).token)
		if err != nil {
			t.Fatalf("scrape %s verifying %s: %v", rep.metrics, metricsName, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape %s = %d", rep.metrics, resp.StatusCode)
		}
	}
	if again := publishedCA(t, ns, "upload-operator-ca"); again != ca {
		t.Fatal("the second replica published another CA")
	}
}

// With cert-manager's Secret mounted (TLS_CERT_FILE, ca.crt beside it) the
// operator publishes that ca.crt, and only it: the mounted key stays where it is.
func TestOperatorPublishesTheMountedCA(t *testing.T) {
	const ns = "mounted-ca"
	if o, err := kubectl(t, "create", "namespace", ns); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	certs, trusting := loopbackTLS(t)
	rep := startReplicaWith(t, map[string]string{"SESSION_NAMESPACE": ns, "WATCH_NAMESPACE": ns,
		"TLS_CERT_FILE": certs.CertFile, "TLS_KEY_FILE": certs.KeyFile, "TLS_CA_CONFIGMAP": "upload-operator-ca",
		"METRICS_CERT_DIR": filepath.Dir(certs.CertFile)}, "https", trusting)
	want, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := publishedCA(t, ns, "upload-operator-ca"); got != string(want) {
		t.Fatalf("published\n%s\nwant the mounted ca.crt\n%s", got, want)
	}
	verifyServed(t, strings.TrimSuffix(rep.metrics, "/metrics"), "127.0.0.1", string(want))
}

// publishedCA waits for the ConfigMap and checks it holds one certificate
// and nothing else.
func publishedCA(t *testing.T, ns, name string) string {
	t.Helper()
	var data map[string]string
	waitFor(t, 30*time.Second, "ConfigMap "+ns+"/"+name, func() (bool, string) {
		var cm corev1.ConfigMap
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &cm); err != nil {
			return false, err.Error()
		}
		data = cm.Data
		return len(cm.BinaryData) == 0, ""
	})
	ca := data["ca.crt"]
	if len(data) != 1 || !strings.HasPrefix(ca, "-----BEGIN CERTIFICATE-----") || strings.Contains(ca, "PRIVATE KEY") {
		t.Fatalf("ConfigMap %s/%s must hold ca.crt, one certificate, and nothing else: %v", ns, name, data)
	}
	return ca
}

// verifyServed dials addr (https://host:port) as a client that trusts only
// caPEM and expects the certificate to be valid for serverName.
func verifyServed(t *testing.T, url, serverName, caPEM string) {
	t.Helper()
	if err := dialVerified(url, serverName, caPEM); err != nil {
		t.Fatalf("%s as %s, trusting the published CA: %v", url, serverName, err)
	}
}

func verifiedTLS(serverName, caPEM string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("no certificate in the CA PEM")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}, nil
}

func dialVerified(url, serverName, caPEM string) error {
	cfg, err := verifiedTLS(serverName, caPEM)
	if err != nil {
		return err
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", strings.TrimPrefix(url, "https://"), cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

func scrapeVerified(url, serverName, caPEM, token string) (*http.Response, error) {
	cfg, err := verifiedTLS(serverName, caPEM)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}).Do(req)
}

// Replicas that start together race to create the CA; each must end up
// signing with the one that was stored.
func TestReplicasStartingTogetherShareOneCA(t *testing.T) {
	const ns = "ca-race"
	if o, err := kubectl(t, "create", "namespace", ns); err != nil && !strings.Contains(o, "AlreadyExists") {
		t.Fatal(o)
	}
	cs, err := kubernetes.NewForConfig(stack.Kube.Config)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		pem []byte
		err error
	}
	const replicas = 8
	results := make(chan result, replicas)
	start := make(chan struct{})
	for range replicas {
		go func() {
			<-start
			a, err := servingcert.EnsureAuthority(context.Background(), cs, ns, "upload-operator-tls-ca", time.Now())
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{pem: a.CertPEM}
		}()
	}
	close(start)
	stored := map[string]int{}
	for range replicas {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		stored[string(r.pem)]++
	}
	if len(stored) != 1 {
		t.Fatalf("%d replicas ended with %d different CAs", replicas, len(stored))
	}
	secret := mustKubectl(t, "-n", ns, "get", "secret", "upload-operator-tls-ca", "-o", "jsonpath={.data.ca\\.crt}")
	pem, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	if stored[string(pem)] != replicas {
		t.Fatal("the replicas' CA is not the stored one")
	}
}

// loopbackTLS writes a CA and a certificate for 127.0.0.1, and returns them
// with a client that trusts the CA.
func loopbackTLS(t *testing.T) (*localenv.TLS, *http.Client) {
	t.Helper()
	certs, err := localenv.NewTLS(filepath.Join(t.TempDir(), "tls"), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	trusting, err := localenv.ClientTrusting(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return certs, trusting
}
