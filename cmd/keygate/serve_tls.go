package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// TLSFiles names the PEM files of serve's TLS. Cert and Key are both set or
// both empty; ClientCA, when set, makes the listeners ask for client
// certificates signed by it.
type TLSFiles struct {
	Cert, Key, ClientCA string
}

// certStore holds the certificate and client CAs that serve's listeners
// use. At each handshake it looks at the files, and reads them again when
// one has changed, so that certificates are renewed without a restart.
type certStore struct {
	files TLSFiles
	log   *slog.Logger

	mu     sync.Mutex
	stamps [3]fileStamp // of Cert, Key and ClientCA as last read
	cert   *tls.Certificate
	cas    *x509.CertPool // nil without ClientCA
}

// newCertStore reads the files, failing if they do not make a certificate.
func newCertStore(files TLSFiles, log *slog.Logger) (*certStore, error) {
	s := &certStore{files: files, log: log, stamps: files.stamps()}
	var err error
	if s.cert, s.cas, err = files.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (f TLSFiles) stamps() [3]fileStamp {
	st := [3]fileStamp{stampOf(f.Cert), stampOf(f.Key)}
	if f.ClientCA != "" {
		st[2] = stampOf(f.ClientCA)
	}
	return st
}

// load reads the certificate, its key and the client CAs.
func (f TLSFiles) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	if f.ClientCA == "" {
		return &cert, nil, nil
	}
	pem, err := os.ReadFile(f.ClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS client CA: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("TLS client CA %s holds no PEM certificate", f.ClientCA)
	}
	return &cert, cas, nil
}

// current returns the certificate and client CAs, read again if a file has
// changed. Files that do not make a certificate (as while they are being
// written) leave the previous ones in use until they change again.
func (s *certStore) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.files.stamps(); st != s.stamps {
		s.stamps = st
		cert, cas, err := s.files.load()
		if err != nil {
			s.log.Warn("TLS files changed but cannot be used; keeping the certificate read before", "err", err)
		} else {
			s.cert, s.cas = cert, cas
			s.log.Info("TLS files changed; new connections use them", "cert", s.files.Cert)
		}
	}
	return s.cert, s.cas
}

// config returns a server config that offers protos by ALPN and, with
// client CAs, verifies client certificates as auth says.
func (s *certStore) config(protos []string, auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, cas := s.current()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				NextProtos:   protos,
			}
			if cas != nil {
				c.ClientCAs, c.ClientAuth = cas, auth
			}
			return c, nil
		},
	}
}
