package servingcert

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

func TestIssuedCertificateVerifiesAgainstThePublishedCAOnly(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ca, keyPEM, err := NewAuthority("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ca.CertPEM), "PRIVATE KEY") || !strings.Contains(string(keyPEM), "PRIVATE KEY") {
		t.Fatalf("the published PEM must hold the certificate only:\n%s", ca.CertPEM)
	}
	other, _, err := NewAuthority("another CA", now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"upload-api.ns.svc", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host string
		ca         *Authority
		ok         bool
	}{
		{"its CA, a DNS name", "upload-api.ns.svc", ca, true},
		{"its CA, an IP address", "127.0.0.1", ca, true},
		{"its CA, another name", "metrics.ns.svc", ca, false},
		{"another CA", "upload-api.ns.svc", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(tc.ca.CertPEM) {
				t.Fatal("CA PEM not parsed")
			}
			_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: tc.host, Roots: pool, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if (err == nil) != tc.ok {
				t.Fatalf("verify %s: %v, want ok=%v", tc.host, err, tc.ok)
			}
		})
	}
	again, err := ParseAuthority(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Issue(nil, now); err == nil {
		t.Fatal("a certificate without names was issued")
	}
	if _, err := ParseAuthority(cert.Leaf.Raw, keyPEM); err == nil {
		t.Fatal("DER taken for a CA")
	}
}

func TestSourceRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ca, _, err := NewAuthority("test CA", now)
	if err != nil {
		t.Fatal(err)
	}
	clock := now
	src := &Source{Authority: ca, Names: []string{"a.svc"}, Now: func() time.Time { return clock }}
	first, err := src.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	clock = now.Add(ServingValidity / 2)
	if same, _ := src.GetCertificate(nil); same != first {
		t.Fatal("renewed at half its life")
	}
	clock = now.Add(ServingValidity * 3 / 4)
	renewed, err := src.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first {
		t.Fatal("not renewed at three quarters of its life")
	}
	if !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatalf("renewed certificate expires %v, the first %v", renewed.Leaf.NotAfter, first.Leaf.NotAfter)
	}
}

func TestFileCAPublishesCertificatesOnly(t *testing.T) {
	t.Parallel()
	ca, keyPEM, err := NewAuthority("test CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := certificatesOnly(append(append([]byte{}, keyPEM...), ca.CertPEM...))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(ca.CertPEM) {
		t.Fatalf("got\n%s\nwant the certificate only", got)
	}
	if _, err := certificatesOnly(keyPEM); err == nil {
		t.Fatal("a key alone was published")
	}
}
