package servingcert

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the Secret that keeps the CA and of the ConfigMap that publishes it.
const (
	SecretCertKey = "ca.crt"
	SecretKeyKey  = "ca.key"
	ConfigMapKey  = "ca.crt"
)

var managedBy = map[string]string{"app.kubernetes.io/managed-by": "upload-operator"}

// EnsureAuthority loads the CA kept in the Secret ns/name, creating it when
// there is none. Replicas starting together race to create it; the loser
// reads the winner's, so every replica signs with the same CA.
func EnsureAuthority(ctx context.Context, cs kubernetes.Interface, ns, name string, now time.Time) (*Authority, error) {
	secrets := cs.CoreV1().Secrets(ns)
	for attempt := 0; attempt < 2; attempt++ {
		s, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			a, err := ParseAuthority(s.Data[SecretCertKey], s.Data[SecretKeyKey])
			if err != nil {
				return nil, fmt.Errorf("secret %s/%s: %w", ns, name, err)
			}
			return a, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get secret %s/%s: %w", ns, name, err)
		}
		a, keyPEM, err := NewAuthority("upload-operator CA ("+ns+")", now)
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: managedBy},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{SecretCertKey: a.CertPEM, SecretKeyKey: keyPEM},
		}, metav1.CreateOptions{})
		if err == nil {
			return a, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create secret %s/%s: %w", ns, name, err)
		}
	}
	return nil, fmt.Errorf("secret %s/%s: created and deleted again while starting", ns, name)
}

// Publisher keeps the CA certificate in a ConfigMap, the one place clients and
// Prometheus read it from. It runs on the leader only, so replicas never take
// turns writing different CAs while a new one rolls out.
type Publisher struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Read returns the CA certificate (PEM) to publish: the operator's own
	// CA, or ca.crt beside a mounted certificate that cert-manager renews.
	Read     func() ([]byte, error)
	Interval time.Duration
	Log      logr.Logger
}

// NeedLeaderElection: see the type's comment.
func (p *Publisher) NeedLeaderElection() bool { return true }

// Start publishes now and again every Interval until ctx ends.
func (p *Publisher) Start(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Publish(ctx); err != nil {
			p.Log.Error(err, "publishing the CA certificate", "configMap", p.Namespace+"/"+p.Name)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Publish writes the CA certificate into the ConfigMap unless it holds it already.
func (p *Publisher) Publish(ctx context.Context) error {
	ca, err := p.Read()
	if err != nil {
		return err
	}
	cms := p.Client.CoreV1().ConfigMaps(p.Namespace)
	cm, err := cms.Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: managedBy},
			Data:       map[string]string{ConfigMapKey: string(ca)},
		}, metav1.CreateOptions{})
		if err == nil {
			p.Log.Info("published the CA certificate", "configMap", p.Namespace+"/"+p.Name)
		}
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data[ConfigMapKey] == string(ca) && len(cm.Data) == 1 && len(cm.BinaryData) == 0 {
		return nil
	}
	cm.Data = map[string]string{ConfigMapKey: string(ca)}
	cm.BinaryData = nil
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return err
	}
	p.Log.Info("published a new CA certificate", "configMap", p.Namespace+"/"+p.Name)
	return nil
}

// FileCA reads the CA certificate cert-manager (or a Secret of one's own)
// mounts beside the serving certificate, checking that it holds certificates
// only: a key must never reach the ConfigMap.
func FileCA(path string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := os.ReadFile(path) //nolint:gosec // G304: the path is the operator's own setting
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		return certificatesOnly(b)
	}
}

func certificatesOnly(b []byte) ([]byte, error) {
	var out bytes.Buffer
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if err := pem.Encode(&out, block); err != nil {
			return nil, err
		}
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("CA certificate: no certificate in %d bytes", len(b))
	}
	return out.Bytes(), nil
}
