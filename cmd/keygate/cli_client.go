package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/admin"
)

// cliFlags are the flags every admin command takes.
type cliFlags struct {
	adminURL  string
	tokenFile string
	dbPath    string
	output    string
	timeout   time.Duration
	// TLS of an https admin URL: the CA to trust, the client certificate.
	caFile, certFile, keyFile string
}

func (c *cliFlags) register(fs *flagSet) {
	fs.StringVar(&c.adminURL, "admin-url", "http://127.0.0.1:9192", "`URL` of the admin API")
	fs.StringVar(&c.tokenFile, "admin-token-file", "", "`file` holding the admin token; <db>.admin-token when empty; KEYGATE_ADMIN_TOKEN takes precedence")
	fs.StringVar(&c.dbPath, "db", "keygate.db", "database `file` of keygate serve, whose generated admin token to use when no token is given")
	fs.bindEnvAll()
	fs.StringVar(&c.caFile, "tls-ca", "", "PEM `file` of the CA that signed an https admin API's certificate; the system's CAs when empty")
	fs.StringVar(&c.certFile, "tls-cert", "", "PEM `file` of the client certificate to present")
	fs.StringVar(&c.keyFile, "tls-key", "", "PEM `file` of the client certificate's key")
	fs.bindEnv("tls-ca", "KEYGATE_ADMIN_CA") // KEYGATE_TLS_* are serve's own certificate
	fs.bindEnv("tls-cert", "KEYGATE_ADMIN_CERT")
	fs.bindEnv("tls-key", "KEYGATE_ADMIN_KEY")
	fs.StringVar(&c.output, "o", "text", "output `format`: text or json")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
}

// client returns an admin API client, finding the token the way serve saves it.
func (c *cliFlags) client() (*admin.Client, error) {
	if c.output != "text" && c.output != "json" {
		return nil, usagef("-o must be text or json, not %q", c.output)
	}
	token := os.Getenv("KEYGATE_ADMIN_TOKEN")
	if token == "" {
		path := c.tokenFile
		if path == "" {
			path = c.dbPath + ".admin-token"
		}
		var err error
		if token, err = readToken(path); err != nil {
			return nil, fmt.Errorf("%w: give --db the database keygate serve uses (its token is <db>.admin-token), or --admin-token-file, or set KEYGATE_ADMIN_TOKEN", err)
		}
	}
	hc := &http.Client{Timeout: c.timeout}
	if c.caFile != "" || c.certFile != "" || c.keyFile != "" {
		tc, err := clientTLS(c.caFile, c.certFile, c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("admin API TLS: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	return admin.NewClient(c.adminURL, token, hc), nil
}

// explainClientError says what an admin API call's error means for the
// user: the API's own answer without the client's prefix, or what to do
// when the admin API cannot be reached or is not the admin API.
func explainClientError(err error, adminURL string) error {
	var api *admin.APIError
	switch {
	case errors.As(err, new(usageError)):
		return err
	case errors.As(err, &api):
		if api.Code == "" {
			return fmt.Errorf("HTTP %d: %s", api.HTTPStatus, api.Message)
		}
		return fmt.Errorf("%s (HTTP %d): %s", api.Code, api.HTTPStatus, api.Message)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no admin API at %s (connection refused): start one with \"keygate serve\", or point --admin-url (or KEYGATE_ADMIN_URL) at the running one", adminURL)
	case errors.As(err, new(*url.Error)) && speaksHTTP2First(adminURL):
		return fmt.Errorf("%s answers in HTTP/2 only, as keygate's gRPC Check service does: point --admin-url at serve's --admin-addr (127.0.0.1:9192 by default)", adminURL)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "keygate admin: "))
}

// speaksHTTP2First reports whether the server of the http:// URL u opens
// a connection with an HTTP/2 SETTINGS frame, as a gRPC server does. To an
// HTTP/1.1 request net/http then fails in several ways, none of them
// telling; an HTTP/1.1 server says nothing before the request.
func speaksHTTP2First(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" {
		return false
	}
	c, err := net.DialTimeout("tcp", pu.Host, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	if c.SetReadDeadline(time.Now().Add(time.Second)) != nil {
		return false
	}
	var header [9]byte // an HTTP/2 frame header; its fourth byte is the type
	_, err = io.ReadFull(c, header[:])
	return err == nil && header[3] == 0x4
}

// clientTLS is the config of a client that trusts the CAs in caFile (the
// system's when empty) and presents the certificate in certFile and keyFile
// (none when empty).
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its file and its key")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
