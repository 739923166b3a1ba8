// Package servingcert gives the operator a certificate of its own when no
// cert-manager or other issuer provides one: a CA kept in a Secret of the
// operator's namespace signs, in memory, each replica's serving certificate,
// and only the CA's certificate is published (a ConfigMap), so that clients
// and Prometheus can verify the operator without being able to read a key.
package servingcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// Lifetimes: the CA outlives many serving certificates, which replicas renew
// in memory well before they expire (see Source). Rotating the CA is an
// operator's decision (delete its Secret, restart; docs/operations.md).
const (
	CAValidity      = 10 * 365 * 24 * time.Hour
	ServingValidity = 90 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a peer whose clock runs a little
	// behind accepts a certificate issued a moment ago.
	clockSkew = 5 * time.Minute
)

// Authority is a CA able to sign serving certificates.
type Authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	CertPEM []byte // what is published: the certificate only
}

// NewAuthority creates a CA. keyPEM is for the Secret that keeps it and must
// never be published.
func NewAuthority(commonName string, now time.Time) (a *Authority, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	a, err = ParseAuthority(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		return nil, nil, err
	}
	return a, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// ParseAuthority reads a CA kept as PEM.
func ParseAuthority(certPEM, keyPEM []byte) (*Authority, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key pair: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: not a CA (basic constraints)")
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key: cannot sign")
	}
	return &Authority{cert: cert, key: signer, CertPEM: certPEM}, nil
}

// NotAfter is when the CA itself expires.
func (a *Authority) NotAfter() time.Time { return a.cert.NotAfter }

// Issue signs a serving certificate for names (DNS names or IP addresses)
// with a fresh key that never leaves the process.
func (a *Authority) Issue(names []string, now time.Time) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, errors.New("serving certificate: no names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	notAfter := now.Add(ServingValidity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("serial number: %v", err)) // crypto/rand does not fail on supported systems
	}
	return n
}

// Source hands TLS servers a serving certificate and replaces it once two
// thirds of its life have passed, so a replica that runs for months never
// serves an expired one and needs no restart.
type Source struct {
	Authority *Authority
	Names     []string
	Now       func() time.Time

	mu   sync.Mutex
	cert *tls.Certificate
}

// GetCertificate is tls.Config's callback.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cert != nil && now.Before(renewAt(s.cert.Leaf)) {
		return s.cert, nil
	}
	c, err := s.Authority.Issue(s.Names, now)
	if err != nil {
		if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
			return s.cert, nil
		}
		return nil, err
	}
	s.cert = c
	return c, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}
