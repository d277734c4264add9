package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// testCA is a certificate authority made at test time.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a certificate for 127.0.0.1 with the given serial, usable by
// servers and clients, and returns it and its key in PEM.
func (ca *testCA) issue(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "keygate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// replaceFile replaces path with data in one rename, as a careful operator
// (or cert-manager) does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// tlsConfig trusts ca and presents the client certificate, if any.
func tlsConfig(t *testing.T, ca *testCA, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: x509.NewCertPool()}
	c.RootCAs.AddCert(ca.cert)
	if certPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// checkOverTLS sends one Check over a new connection and returns the
// serial of the server's certificate, or the error.
func checkOverTLS(addr string, creds credentials.TransportCredentials) (int64, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, envoyRequest(""), grpc.Peer(&p)); err != nil {
		return 0, err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return 0, errors.New("the connection has no TLS")
	}
	return info.State.PeerCertificates[0].SerialNumber.Int64(), nil
}

// TestTLS runs serve with TLS and client certificates on both listeners,
// and renews the server certificate and the client CA on disk while it
// runs.
func TestTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	ca, other := newTestCA(t, "keygate test CA"), newTestCA(t, "another CA")
	certFile, keyFile, caFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "clients.crt")
	c1, k1 := ca.issue(t, 1001)
	replaceFile(t, certFile, c1)
	replaceFile(t, keyFile, k1)
	replaceFile(t, caFile, ca.pem)
	envoyCert, envoyKey := ca.issue(t, 2001)
	intruderCert, intruderKey := other.issue(t, 3001)

	s := startServer(t, filepath.Join(dir, "keygate.db"), "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", caFile)
	withCert := credentials.NewTLS(tlsConfig(t, ca, envoyCert, envoyKey))
	if serial, err := checkOverTLS(s.grpcAddr, withCert); err != nil || serial != 1001 {
		t.Fatalf("Check with a client certificate: serial %d, %v", serial, err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate":            credentials.NewTLS(tlsConfig(t, ca, nil, nil)),
		"a certificate of another CA":      credentials.NewTLS(tlsConfig(t, ca, intruderCert, intruderKey)),
		"plaintext":                        insecure.NewCredentials(),
		"a server certificate not trusted": credentials.NewTLS(tlsConfig(t, other, envoyCert, envoyKey)),
	} {
		if _, err := checkOverTLS(s.grpcAddr, creds); err == nil {
			t.Errorf("Check with %s was answered", name)
		}
	}

	// The admin API: a client certificate and the token; probes need neither.
	token, err := readToken(s.db + ".admin-token")
	if err != nil {
		t.Fatal(err)
	}
	httpsClient := func(certPEM, keyPEM []byte) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig(t, ca, certPEM, keyPEM)}}
	}
	base := "https://" + s.admin
	if _, err := admin.NewClient(base, token, httpsClient(envoyCert, envoyKey)).ListAccounts(context.Background(), &adminv1.ListAccountsRequest{}); err != nil {
		t.Errorf("admin API with a client certificate: %v", err)
	}
	var apiErr *admin.APIError
	_, err = admin.NewClient(base, token, httpsClient(nil, nil)).ListAccounts(context.Background(), &adminv1.ListAccountsRequest{})
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusUnauthorized || !strings.Contains(apiErr.Message, "client certificate") {
		t.Errorf("admin API without a client certificate: %v; want a 401 asking for one", err)
	}
	if resp, err := httpsClient(nil, nil).Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz without a client certificate: %v, %v", resp, err)
	}
	if resp, err := http.Get("http://" + s.admin + "/readyz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("the admin listener answered plaintext HTTP")
	}

	// The CLI, given the CA and a client certificate.
	for name, data := range map[string][]byte{"ca.crt": ca.pem, "cli.crt": envoyCert, "cli.key": envoyKey} {
		replaceFile(t, filepath.Join(dir, name), data)
	}
	bin, _ := keygateBinary()
	cli := exec.Command(bin, "account", "list", "--admin-url", base, "--db", s.db,
		"--tls-ca", filepath.Join(dir, "ca.crt"), "--tls-cert", filepath.Join(dir, "cli.crt"), "--tls-key", filepath.Join(dir, "cli.key"))
	cli.Env = cleanEnv()
	if out, err := cli.CombinedOutput(); err != nil {
		t.Errorf("keygate account list over TLS: %v\n%s", err, out)
	}

	// A renewed certificate is served on the next connection.
	c2, k2 := ca.issue(t, 1002)
	replaceFile(t, certFile, c2)
	replaceFile(t, keyFile, k2)
	if serial, err := checkOverTLS(s.grpcAddr, withCert); err != nil || serial != 1002 {
		t.Errorf("after renewal: serial %d, %v; want 1002", serial, err)
	}
	// A file being written (here: garbage) leaves the last good certificate.
	replaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot yet\n"))
	if serial, err := checkOverTLS(s.grpcAddr, withCert); err != nil || serial != 1002 {
		t.Errorf("with a broken certificate file: serial %d, %v; want 1002 still", serial, err)
	}
	replaceFile(t, certFile, c2)
	// A new client CA takes over: the old clients are out, the new ones in.
	replaceFile(t, caFile, other.pem)
	if _, err := checkOverTLS(s.grpcAddr, withCert); err == nil {
		t.Error("a client of the replaced CA was answered")
	}
	if _, err := checkOverTLS(s.grpcAddr, credentials.NewTLS(tlsConfig(t, ca, intruderCert, intruderKey))); err != nil {
		t.Errorf("a client of the new CA: %v", err)
	}
	s.stop()
	for _, want := range []string{"TLS files changed; new connections use them", "keeping the certificate read before"} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, s.stderr)
		}
	}
}

// TestAdminTokenRotation rotates the admin token by editing the token file
// while serve runs: the new token works at once, the old one until it is
// removed from the file, and a file left empty changes nothing.
func TestAdminTokenRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-tokens")
	replaceFile(t, tokenFile, []byte("kgadmin-first\n"))
	s := startServer(t, filepath.Join(dir, "keygate.db"), "--admin-token-file", tokenFile)
	status := func(token string) int {
		t.Helper()
		_, err := admin.NewClient("http://"+s.admin, token, nil).ListAccounts(context.Background(), &adminv1.ListAccountsRequest{})
		var apiErr *admin.APIError
		switch {
		case err == nil:
			return http.StatusOK
		case errors.As(err, &apiErr):
			return apiErr.HTTPStatus
		}
		t.Fatal(err)
		return 0
	}
	for _, step := range []struct {
		file          string
		first, second int
	}{
		{"kgadmin-first\n", 200, 401},
		{"# rotating\nkgadmin-second\nkgadmin-first\n", 200, 200},
		{"kgadmin-second\n", 401, 200},
		{"", 401, 200},           // unusable: the tokens read before stay
		{"\n# none\n", 401, 200}, // likewise
	} {
		replaceFile(t, tokenFile, []byte(step.file))
		if got := status("kgadmin-first"); got != step.first {
			t.Errorf("file %q: first token answered %d, want %d", step.file, got, step.first)
		}
		if got := status("kgadmin-second"); got != step.second {
			t.Errorf("file %q: second token answered %d, want %d", step.file, got, step.second)
		}
	}
	// The CLI presents the first token of the file.
	replaceFile(t, tokenFile, []byte("kgadmin-second\nkgadmin-first\n"))
	if out, _, err := s.tryCLI("account", "list", "--admin-token-file", tokenFile); err != nil {
		t.Errorf("CLI with a rotated token file: %v %s", err, out)
	}
	s.stop()
	log := s.stderr.String()
	if !strings.Contains(log, "admin token file changed") || !strings.Contains(log, "admin token file unusable") {
		t.Errorf("the log does not tell of the changes:\n%s", log)
	}
	if strings.Contains(log, "kgadmin-") {
		t.Errorf("the log shows a token:\n%s", log)
	}
}

// TestAdminExposure checks which admin addresses, TLS settings and tokens
// serve accepts, then that the binary refuses an exposed admin API with one
// line. The refused address is a documentation address that no interface
// has, so nothing is bound even if the check were missing.
func TestAdminExposure(t *testing.T) {
	tls := TLSFiles{Cert: "c.pem", Key: "k.pem"}
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"loopback", Config{AdminAddr: "127.0.0.1:9192"}, true},
		{"IPv6 loopback", Config{AdminAddr: "[::1]:9192"}, true},
		{"localhost", Config{AdminAddr: "localhost:9192"}, true},
		{"every interface", Config{AdminAddr: ":9192"}, false},
		{"every interface, generated token, TLS", Config{AdminAddr: ":9192", TLS: tls}, false},
		{"every interface, token file, no TLS", Config{AdminAddr: "0.0.0.0:9192", TokenFile: "t"}, false},
		{"every interface, token file, TLS", Config{AdminAddr: "0.0.0.0:9192", TokenFile: "t", TLS: tls}, true},
		{"every interface, token from the environment, TLS", Config{AdminAddr: "[::]:9192", AdminToken: "x", TLS: tls}, true},
		{"a host name", Config{AdminAddr: "admin.internal:9192"}, false},
		{"allowed", Config{AdminAddr: ":9192", AllowInsecureAdmin: true}, true},
		{"key without certificate", Config{AdminAddr: "127.0.0.1:9192", TLS: TLSFiles{Key: "k"}}, false},
		{"client CA without certificate", Config{AdminAddr: "127.0.0.1:9192", TLS: TLSFiles{ClientCA: "ca"}}, false},
	} {
		if err := checkSecurity(c.cfg); (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}

	if testing.Short() {
		return
	}
	bin, err := keygateBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--db", filepath.Join(t.TempDir(), "keygate.db"), "--grpc-addr", "127.0.0.1:0", "--admin-addr", "192.0.2.1:9192")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	line := strings.TrimSuffix(string(out), "\n")
	if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, "refusing to serve the admin API on 192.0.2.1:9192") || !strings.Contains(line, "--allow-insecure-admin") {
		t.Errorf("serve with an exposed admin API: %v, output:\n%s\nwant one line refusing it", err, out)
	}
}

// TestWarnsAboutOpenFiles starts serve on a database and a token file that
// other users may read: it starts, and says to chmod both.
func TestWarnsAboutOpenFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	db := filepath.Join(t.TempDir(), "keygate.db")
	s := startServer(t, db)
	s.stop()
	if strings.Contains(s.stderr.String(), "chmod") {
		t.Errorf("warned about files serve created:\n%s", s.stderr)
	}
	for _, f := range []string{db, db + ".admin-token"} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = startServer(t, db)
	s.stop()
	for _, f := range []string{db, db + ".admin-token"} {
		if !strings.Contains(s.stderr.String(), "chmod 600 it\" file="+f+" mode=0644") {
			t.Errorf("no warning about %s:\n%s", f, s.stderr)
		}
	}
}
