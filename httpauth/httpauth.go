// Package httpauth answers authorization subrequests over plain HTTP, as
// Envoy's ext_authz HTTP service, Caddy's forward_auth, Traefik's
// forwardAuth and nginx's auth_request send them. It decides with the same
// authz.Authorizer as the gRPC Check and answers with the same denials.
//
// Any method and any path under the handler's prefix is a check: Envoy sends
// the original method and the prefix followed by the original path, the
// others send X-Forwarded-Method, -Uri and -Host. The decision reads only
// the credential headers, so none of these matter to it.
//
// Allow is 200 with x-account-id and x-key-id for the proxy to copy to the
// upstream request, and x-envoy-auth-headers-to-remove naming the route's
// credential headers (Envoy strips them; other proxies are configured to).
// A denial is the status, WWW-Authenticate and JSON body of authz.DenialFor;
// a request with X-Keygate-Error-Header also gets that body in the
// X-Keygate-Error response header, for nginx, whose auth_request drops the
// body. A store that cannot answer is a 503, which Envoy and nginx treat as
// an error and Caddy passes on.
//
// Route settings come from X-Keygate-Credentials and X-Keygate-Error-Style,
// which the proxy sets per route, as context_extensions do for gRPC. A
// client that sets them itself can only choose which of its own headers
// are read and how errors look: every check still needs a valid key.
package httpauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
)

// Request headers read besides the credentials.
const (
	HeaderCredentials = "X-Keygate-Credentials"  // a list for authz.ParseSources
	HeaderErrorStyle  = "X-Keygate-Error-Style"  // a name for authz.ParseStyle
	HeaderWantError   = "X-Keygate-Error-Header" // any value: also send the body in HeaderError
)

// Response headers beyond the identity headers and the denial's.
const (
	HeaderError  = "X-Keygate-Error"                // the denial body, on request
	HeaderRemove = "X-Envoy-Auth-Headers-To-Remove" // on allow: the credential headers
)

// Handler is an http.Handler that answers checks. It is safe for concurrent
// use.
type Handler struct {
	authorizer *authz.Authorizer
	metrics    *checkmetrics.Set
	prefix     string
	denials    [][]denial // by authz.Style, then authz.Reason
	remove     [][]string // HeaderRemove values by authz.Sources
}

// denial is the prebuilt answer to one denial: header values are slices so
// that they go into the response's header map as they are.
type denial struct {
	status    int
	challenge []string // nil when there is none
	body      []byte
	inHeader  []string // body, for HeaderError
	length    []string
}

var (
	contentType = []string{authz.ContentType}
	accountID   = http.CanonicalHeaderKey(authz.HeaderAccountID)
	keyID       = http.CanonicalHeaderKey(authz.HeaderKeyID)
	// credentialHeaders are the canonical names of the authz.Sources' headers.
	credentialHeaders = func() (names []string) {
		for _, s := range authz.AllSources() {
			names = append(names, http.CanonicalHeaderKey(s.Header()))
		}
		return names
	}()
)

// NewHandler returns a Handler that decides with a the requests whose path
// starts with prefix, and answers 404 to others. An empty prefix or "/"
// takes every path. It registers its metrics (checkmetrics, api="http") on
// reg; with a nil reg they are kept but not exported.
func NewHandler(a *authz.Authorizer, prefix string, reg prometheus.Registerer) *Handler {
	h := &Handler{
		authorizer: a,
		metrics:    checkmetrics.New(reg, checkmetrics.APIHTTP),
		prefix:     strings.TrimSuffix(prefix, "/"),
	}
	h.denials = make([][]denial, len(authz.Styles())+1)
	for _, s := range authz.Styles() {
		h.denials[s] = make([]denial, len(authz.Reasons()))
		for _, r := range authz.Reasons()[1:] {
			d := authz.DenialFor(r, s)
			n := denial{
				status:   d.Status,
				body:     []byte(d.Body),
				inHeader: []string{d.Body},
				length:   []string{strconv.Itoa(len(d.Body))},
			}
			if d.Challenge != "" {
				n.challenge = []string{d.Challenge}
			}
			h.denials[s][r] = n
		}
	}
	h.remove = make([][]string, 1<<len(authz.AllSources()))
	for set := range h.remove {
		h.remove[set] = []string{strings.Join(authz.Sources(set).Headers(), ", ")}
	}
	return h
}

// ServeHTTP answers one check.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; h.prefix != "" && p != h.prefix && !strings.HasPrefix(p, h.prefix+"/") {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	defer h.metrics.Since(start)
	d, err := h.authorizer.Authorize(r.Context(), requestFrom(r.Header))
	if err != nil {
		h.metrics.Error()
		http.Error(w, "keygate: the key store could not answer", http.StatusServiceUnavailable)
		return
	}
	h.metrics.Checks(d.Reason).Inc()
	out := w.Header()
	if d.Allowed() {
		out[accountID] = []string{d.AccountID}
		out[keyID] = []string{d.KeyID}
		out[HeaderRemove] = h.remove[d.Route.Sources]
		w.WriteHeader(http.StatusOK)
		return
	}
	n := &h.denials[d.Route.Style][d.Reason]
	out["Content-Type"] = contentType
	out["Content-Length"] = n.length
	if n.challenge != nil {
		out["Www-Authenticate"] = n.challenge
	}
	if len(r.Header[HeaderWantError]) > 0 {
		out[HeaderError] = n.inHeader
	}
	w.WriteHeader(n.status)
	w.Write(n.body)
}

// requestFrom copies the credential headers and the route settings out of
// the headers of a check. Repeated credential headers are joined with ",",
// as Envoy joins them, so that they fail as one malformed value.
func requestFrom(hdr http.Header) authz.Request {
	req := authz.Request{Route: authz.ParseRoute(hdr.Get(HeaderCredentials), hdr.Get(HeaderErrorStyle))}
	for i, s := range authz.AllSources() {
		switch vs := hdr[credentialHeaders[i]]; len(vs) {
		case 0:
		case 1:
			*req.Credential(s) = vs[0]
		default:
			*req.Credential(s) = strings.Join(vs, ",")
		}
	}
	return req
}
