package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// --tlsca trusts a private CA: a NATS server whose certificate that CA
// signed is reached over tls://; without the CA it is refused; a CA file
// that is not one fails clearly, before connecting.
func TestTLSPrivateCA(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, serverCert := privateCA(t, dir)
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TLS: true, TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	url := fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)

	noEnv := env{}
	if r := enqueueWith(t, nil, noEnv, "deadletters", "--server", url, "--tlsca", caFile); r.code != exitOK || r.stdout != "" {
		t.Errorf("--tlsca: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := enqueueWith(t, nil, env{vars: map[string]string{"NATS_URL": url, "NATS_CA": caFile}}, "stats"); r.code != exitOK {
		t.Errorf("NATS_URL and NATS_CA: exit %d %q", r.code, r.stderr)
	}
	if r := enqueueWith(t, nil, noEnv, "deadletters", "--server", url); r.code != exitFailed || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without --tlsca: exit %d %q", r.code, r.stderr)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := enqueueWith(t, nil, noEnv, "deadletters", "--server", url, "--tlsca", notPEM); r.code != exitFailed || !strings.Contains(r.stderr, "--tlsca "+notPEM+": no PEM certificate") {
		t.Errorf("a file that is not a CA: exit %d %q", r.code, r.stderr)
	}
	missing := filepath.Join(dir, "missing.pem")
	if r := enqueueWith(t, nil, noEnv, "deadletters", "--server", url, "--tlsca", missing); r.code != exitFailed || !strings.Contains(r.stderr, "--tlsca: open "+missing) {
		t.Errorf("a missing CA file: exit %d %q", r.code, r.stderr)
	}
	// The context's ca field.
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(filepath.Join(cfg, "nats", "context"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctxFile := fmt.Sprintf(`{"url":%q,"ca":%q}`, url, caFile)
	if err := os.WriteFile(filepath.Join(cfg, "nats", "context", "prod.json"), []byte(ctxFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := enqueueWith(t, nil, env{vars: map[string]string{"XDG_CONFIG_HOME": cfg}}, "stats", "--context", "prod"); r.code != exitOK {
		t.Errorf("context with a ca: exit %d %q", r.code, r.stderr)
	}
}

// privateCA writes a new CA's certificate to dir and returns its path and
// a server certificate for 127.0.0.1 that the CA signed.
func privateCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test private CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}
