// Package httpauth answers authorization subrequests over plain HTTP, as
// Envoy's ext_authz HTTP service, Caddy's forward_auth, Traefik's
// forwardAuth and nginx's auth_request send them. It decides with the same
// authz.Authorizer as the gRPC Check and answers with the same denials.
//
// Any method and any path under the handler's prefix is a check: Envoy sends
// the original method and the prefix followed by the original path, the
// others send X-Forwarded-Method, -Uri and -Host. The decision reads only
// the key headers, so none of these matter to it.
//
// Allow is 200 with x-account-id and x-key-id for the proxy to copy to the
// upstream request, and x-envoy-auth-headers-to-remove naming the route's
// key headers (Envoy strips them; other proxies are configured to).
// A denial is the status, WWW-Authenticate and JSON body of answer.DenialFor;
// a request with X-Keygate-Error-Header also gets that body in the
// X-Keygate-Error response header, for nginx, whose auth_request drops the
// body. A store that cannot answer is a 503, which Envoy and nginx treat as
// an error and Caddy passes on.
//
// Route settings come from X-Keygate-Credentials (the key headers) and
// X-Keygate-Error-Style, which the proxy sets per route, as
// context_extensions do for gRPC. A client that sets them itself can only
// choose which of its own headers are read and how errors look: every check
// still needs a valid key.
package httpauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
)

// Request headers read besides the key headers.
const (
	HeaderKeyHeaders = "X-Keygate-Credentials"  // the route's key headers, a list for authz.ParseSources
	HeaderErrorStyle = "X-Keygate-Error-Style"  // a name for authz.ParseStyle
	HeaderWantError  = "X-Keygate-Error-Header" // any value: also send the body in HeaderError
)

// Response headers beyond the identity headers and the denial's.
const (
	HeaderError  = "X-Keygate-Error"                // the denial body, on request
	HeaderRemove = "X-Envoy-Auth-Headers-To-Remove" // on allow: the key headers
)

// Handler is an http.Handler that answers checks. It is safe for concurrent
// use.
type Handler struct {
	authorizer *authz.Authorizer
	metrics    *checkmetrics.Set
	prefix     string
	denials    *[authz.NumStyles][authz.NumSourceSets][authz.NumReasons]denial
	remove     [authz.NumSourceSets][]string // HeaderRemove values
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
	contentType       = []string{answer.ContentType}
	contentTypeHeader = http.CanonicalHeaderKey(answer.HeaderContentType)
	challengeHeader   = http.CanonicalHeaderKey(answer.HeaderChallenge)
	accountID         = http.CanonicalHeaderKey(answer.HeaderAccountID)
	keyID             = http.CanonicalHeaderKey(answer.HeaderKeyID)
	// keyHeaders are the canonical names of the authz.Sources' headers.
	keyHeaders = func() (names []string) {
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
	h.denials = new([authz.NumStyles][authz.NumSourceSets][authz.NumReasons]denial)
	for _, s := range authz.Styles() {
		for set := authz.Sources(1); set < authz.NumSourceSets; set++ {
			for _, r := range authz.Reasons()[1:] {
				h.denials[s][set][r] = newDenial(answer.DenialFor(r, authz.Route{Sources: set, Style: s}))
			}
		}
	}
	for set := range h.remove {
		h.remove[set] = []string{strings.Join(authz.Sources(set).Headers(), ", ")}
	}
	return h
}

func newDenial(d *answer.Denial) denial {
	n := denial{
		status:   d.Status,
		body:     []byte(d.Body),
		inHeader: []string{d.Body},
		length:   []string{strconv.Itoa(len(d.Body))},
	}
	if d.Challenge != "" {
		n.challenge = []string{d.Challenge}
	}
	return n
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
	n := &h.denials[d.Route.Style][d.Route.Sources][d.Reason]
	out[contentTypeHeader] = contentType
	out["Content-Length"] = n.length
	if n.challenge != nil {
		out[challengeHeader] = n.challenge
	}
	if len(r.Header[HeaderWantError]) > 0 {
		out[HeaderError] = n.inHeader
	}
	w.WriteHeader(n.status)
	w.Write(n.body)
}

// requestFrom copies the key headers and the route settings out of the
// headers of a check. Repeated key headers are joined with ",",
// as Envoy joins them, so that they fail as one malformed value.
func requestFrom(hdr http.Header) authz.Request {
	req := authz.Request{Route: authz.ParseRoute(hdr.Get(HeaderKeyHeaders), hdr.Get(HeaderErrorStyle))}
	for i, s := range authz.AllSources() {
		switch vs := hdr[keyHeaders[i]]; len(vs) {
		case 0:
		case 1:
			*req.KeyHeader(s) = vs[0]
		default:
			*req.KeyHeader(s) = strings.Join(vs, ",")
		}
	}
	return req
}
