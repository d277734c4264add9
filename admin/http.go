package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxBodyBytes bounds a request body; a longer one is answered 413.
const maxBodyBytes = 1 << 20

// marshalJSON writes responses. EmitDefaultValues keeps zeros such as a
// balance of 0 and empty lists, while unset timestamps stay absent.
var marshalJSON = protojson.MarshalOptions{EmitDefaultValues: true}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// The codes of the httpErrors.
const (
	codeMethodNotAllowed = "method_not_allowed"
	codePayloadTooLarge  = "payload_too_large"
)

// httpError is an error of the HTTP transport that has no gRPC code.
type httpError struct {
	status        int
	code, message string
}

func (e *httpError) Error() string { return e.message }

type handler struct {
	svc    *Service
	tokens *Tokens
	mux    *http.ServeMux
}

// NewHandler returns the JSON/HTTP transport of svc, serving the routes
// listed in the package documentation. Every request but those for the
// OpenAPI document must carry "Authorization: Bearer <token>" with one of
// tokens.
func NewHandler(svc *Service, tokens *Tokens) http.Handler {
	h := &handler{svc: svc, tokens: tokens, mux: http.NewServeMux()}
	groups := make(map[string][]*route)
	for _, rt := range routes {
		groups[rt.path] = append(groups[rt.path], rt)
	}
	for path, group := range groups {
		h.mux.Handle(path, h.dispatch(group))
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, status.Error(codes.NotFound, "no such route"))
	})
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == openAPIPath {
		serveOpenAPI(w, r)
		return
	}
	if !h.tokens.verify(r.Header.Values("Authorization")) {
		w.Header().Set("WWW-Authenticate", wwwAuthenticate)
		writeError(w, status.Error(codes.Unauthenticated, messageUnauthorized))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// dispatch serves the routes that share one ServeMux path. It picks one by
// the verb after a trailing wildcard ("{account}:credit" is one segment) and
// by method.
func (h *handler) dispatch(group []*route) http.HandlerFunc {
	var wildcard string // the same for every route of the group
	if p := group[0].param; p != nil {
		wildcard = string(p.Name())
	}
	hasVerb := wildcard != "" && strings.HasSuffix(group[0].path, "}")
	return func(w http.ResponseWriter, r *http.Request) {
		id, verb := r.PathValue(wildcard), ""
		if i := strings.LastIndexByte(id, ':'); hasVerb && i >= 0 {
			id, verb = id[:i], id[i+1:]
		}
		var allow []string
		for _, rt := range group {
			switch {
			case rt.verb != verb:
			case rt.method == r.Method:
				h.serve(w, r, rt, id)
				return
			default:
				allow = append(allow, rt.method)
			}
		}
		if len(allow) == 0 {
			writeError(w, status.Error(codes.NotFound, "no such route"))
			return
		}
		writeNotAllowed(w, allow...)
	}
}

// writeNotAllowed answers 405 for a path served only with the methods allow.
func writeNotAllowed(w http.ResponseWriter, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, &httpError{http.StatusMethodNotAllowed, codeMethodNotAllowed, "method not allowed; use " + strings.Join(allow, " or ")})
}

// serve answers one route.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, rt *route, id string) {
	body, err := h.call(w, r, rt, id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// call calls the Service through the route's gRPC handler, which has the
// request decoded from r, and encodes its answer.
func (h *handler) call(w http.ResponseWriter, r *http.Request, rt *route, id string) ([]byte, error) {
	resp, err := rt.call(h.svc, r.Context(), func(req any) error {
		m := req.(proto.Message)
		if err := decodeRequest(w, r, m); err != nil {
			return err
		}
		if rt.param == nil {
			return nil
		}
		return setParam(m, rt.param, id)
	}, nil)
	if err != nil {
		return nil, err
	}
	return marshalJSON.Marshal(resp.(proto.Message))
}

// decodeRequest fills m from the query of a GET or the JSON body of a POST,
// with the proto3 JSON mapping. An empty body is an empty object.
func decodeRequest(w http.ResponseWriter, r *http.Request, m proto.Message) error {
	var data []byte
	if r.Method == http.MethodGet {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return status.Error(codes.InvalidArgument, "malformed query string")
		}
		fields := make(map[string]string, len(q))
		for k, vs := range q {
			if len(vs) != 1 {
				return status.Errorf(codes.InvalidArgument, "query parameter %q is repeated", k)
			}
			fields[k] = vs[0]
		}
		data, _ = json.Marshal(fields) // a map of strings always marshals
	} else {
		var err error
		data, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &httpError{http.StatusRequestEntityTooLarge, codePayloadTooLarge, "request body is larger than 1 MiB"}
		}
		if err != nil {
			return status.Error(codes.InvalidArgument, "cannot read request body")
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return nil
		}
	}
	if err := protojson.Unmarshal(data, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	return nil
}

// setParam puts the path's id into the request field fd. A body that sets
// the field to another value is refused.
func setParam(m proto.Message, fd protoreflect.FieldDescriptor, id string) error {
	rm := m.ProtoReflect()
	if cur := rm.Get(fd).String(); cur != "" && cur != id {
		return status.Errorf(codes.InvalidArgument, "%s in the body differs from the path", fd.JSONName())
	}
	rm.Set(fd, protoreflect.ValueOfString(id))
	return nil
}

// writeError answers err as a JSON error. A gRPC status is mapped through
// errorClasses; internal details are never sent.
func writeError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		st := status.Convert(err)
		c := classOfGRPC(st.Code())
		he = &httpError{c.http, c.code, st.Message()}
		if c == internalClass {
			he.message = "internal error"
		}
	}
	body, _ := json.Marshal(errorBody{errorDetail{he.code, he.message}}) // strings always marshal
	writeJSON(w, he.status, body)
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store") // answers may hold a secret
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body)
}
