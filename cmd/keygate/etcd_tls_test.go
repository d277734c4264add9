package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
	"github.com/keygate/keygate/store/etcd/etcdtest"
)

// pki is a CA and the certificates it signed, as PEM files.
type pki struct{ dir, ca, serverCert, serverKey, clientCert, clientKey string }

// newPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, in t's temporary directory.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	p := pki{dir: dir, ca: filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem")}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.ca, "CERTIFICATE", caDER)
	ca, _ := x509.ParseCertificate(caDER)
	for i, c := range []struct {
		cert, key string
		usage     x509.ExtKeyUsage
	}{{p.serverCert, p.serverKey, x509.ExtKeyUsageServerAuth}, {p.clientCert, p.clientKey, x509.ExtKeyUsageClientAuth}} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "keygate test"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{c.usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, c.cert, "CERTIFICATE", der)
		keyDER, _ := x509.MarshalECPrivateKey(key)
		writePEM(t, c.key, "EC PRIVATE KEY", keyDER)
	}
	return p
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdTLSAndAuth runs keygate on an etcd cluster that requires TLS with
// client certificates and a user name and password, through the flags'
// configuration: --etcd-cacert, --etcd-cert, --etcd-key, --etcd-username and
// --etcd-password-file.
func TestEtcdTLSAndAuth(t *testing.T) {
	p := newPKI(t)
	c := etcdtest.Start(t, 1, func(cfg *embed.Config) {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: p.serverCert, KeyFile: p.serverKey, TrustedCAFile: p.ca, ClientCertAuth: true}
	})

	// As root: a user that may use /keygate/ only, then authentication on.
	tlsInfo := transport.TLSInfo{CertFile: p.clientCert, KeyFile: p.clientKey, TrustedCAFile: p.ca}
	tlsCfg, err := tlsInfo.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	rootCfg := etcdtest.ClientConfig(c.Endpoints())
	rootCfg.TLS = tlsCfg
	root, err := clientv3.New(rootCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	ctx := t.Context()
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.UserAdd(ctx, "keygate", "keygate-password"); return err },
		func() error { _, err := root.RoleAdd(ctx, "keygate"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "keygate", "/keygate/", clientv3.GetPrefixRangeEnd("/keygate/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserGrantRole(ctx, "keygate", "keygate"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	password := filepath.Join(p.dir, "etcd-password")
	if err := os.WriteFile(password, []byte("keygate-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := etcdConfig(c, 30*time.Second)
	cfg.Etcd.CACert, cfg.Etcd.Cert, cfg.Etcd.Key = p.ca, p.clientCert, p.clientKey
	cfg.Etcd.Username, cfg.Etcd.PasswordFile = "keygate", password
	r := startReplica(t, cfg)
	acct, err := r.admin.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme", Balance: 10})
	if err != nil {
		t.Fatal(err)
	}
	k, err := r.admin.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "tls"})
	if err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, k.Secret, http.StatusOK)

	for what, edit := range map[string]func(*Config){
		"a wrong password": func(c *Config) { c.Etcd.Password = "wrong" },
		"no client certificate": func(c *Config) {
			c.Etcd.Cert, c.Etcd.Key = "", ""
		},
		"a prefix the user may not read": func(c *Config) { c.Etcd.Prefix = "/other/" },
	} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			bad := cfg
			edit(&bad)
			bad.Etcd.RequestTimeout = 2 * time.Second
			if m, err := Open(bad, slog.New(slog.DiscardHandler)); err == nil {
				m.store.Close()
				m.closeListeners()
				t.Errorf("keygate started")
			}
		})
	}
}
