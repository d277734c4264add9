package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/keygate/keygate/authz"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// openAPI is the committed OpenAPI document, loaded and validated once.
var openAPI = sync.OnceValues(func() (*openAPIDoc, error) {
	data, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("loading openapi.json: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi.json is not a valid OpenAPI document: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openAPIDoc{data: data, doc: doc, router: router}, nil
})

type openAPIDoc struct {
	data   []byte
	doc    *openapi3.T
	router routers.Router
}

// checkedByOpenAPI serves next and checks every exchange against the
// document (checkExchange), failing t on a mismatch.
func (e *env) checkedByOpenAPI(t *testing.T, next http.Handler) http.Handler {
	api, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s %s: reading the request: %v", r.Method, r.URL, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())

		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := e.checkExchange(api, r, rec); err != nil {
			t.Errorf("%s %s answered %d %.300s: %v", r.Method, r.URL, rec.Code, rec.Body, err)
		}
	})
}

// checkExchange checks one request and its answer against the document. A
// request that matches an operation and that the document accepts must get
// an answer the operation describes, status included. Any other request
// must get a 4xx error.
func (e *env) checkExchange(api *openAPIDoc, r *http.Request, rec *httptest.ResponseRecorder) error {
	ctx := r.Context()
	route, params, err := api.router.FindRoute(r)
	var in *openapi3filter.RequestValidationInput
	if err == nil {
		in = &openapi3filter.RequestValidationInput{
			Request: r, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		err = openapi3filter.ValidateRequest(ctx, in)
	}
	if err != nil {
		if rec.Code/100 != 4 {
			return fmt.Errorf("the document refuses the request (%w), the server did not", err)
		}
		var body any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			return err
		}
		return api.doc.Components.Schemas["Error"].Value.VisitJSON(body)
	}
	e.mu.Lock()
	e.answered[route.Operation.OperationID] = append(e.answered[route.Operation.OperationID], rec.Code)
	e.mu.Unlock()
	return openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	})
}

// TestOpenAPIServed fetches the document without a token.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	api, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	r := e.callWith(t, "GET", "/v1/openapi.json", "", "")
	if r.status != http.StatusOK || r.body != string(api.data) || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /v1/openapi.json: %d %s, %.100s; want 200 and openapi.json", r.status, r.header.Get("Content-Type"), r.body)
	}
	r = e.callWith(t, "POST", "/v1/openapi.json", "", "")
	checkError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if r.header.Get("Allow") != "GET" {
		t.Errorf("Allow %q, want GET", r.header.Get("Allow"))
	}
}

// TestOpenAPIEveryRoute calls every operation of the document for a success
// and for an error, all checked against it by the env, and probes that no
// method or path outside it is answered.
func TestOpenAPIEveryRoute(t *testing.T) {
	e := newEnv(t)
	api, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	acct, err := e.client.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme", Balance: 10})
	if err != nil {
		t.Fatal(err)
	}
	key, err := e.client.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{"{account}": acct.Id, "{key}": key.Key.Id}
	other := map[string]string{"{account}": authz.NewAccountID(e.clock.Now()), "{key}": authz.NewKeyID(e.clock.Now())}
	fill := func(path string, ids map[string]string) string {
		for k, v := range ids {
			path = strings.ReplaceAll(path, k, v)
		}
		return path
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/accounts", `{"name":"globex","balance":"7"}`},
		{"POST", "/v1/accounts", `{"name":""}`},
		{"GET", "/v1/accounts", ""},
		{"GET", "/v1/accounts/{account}", ""},
		{"GET", "/v1/accounts?pageSize=1&pageToken=nonsense", ""},
		{"POST", "/v1/accounts/{account}:credit", `{"amount":5,"idempotencyKey":"a"}`},
		{"POST", "/v1/accounts/{account}:credit", `{"amount":6,"idempotencyKey":"a"}`},
		{"POST", "/v1/accounts/{account}:debit", `{"amount":"2","key":"{key}"}`},
		{"POST", "/v1/accounts/{account}:debit", `{"amount":0}`},
		{"POST", "/v1/accounts/{account}:disable", ""},
		{"POST", "/v1/accounts/{account}:enable", "{}"},
		{"GET", "/v1/accounts/{account}/ledger?pageSize=2", ""},
		{"GET", "/v1/accounts/{account}/ledger?pageSize=-2", ""},
		{"GET", "/v1/accounts/{account}/keys", ""},
		{"POST", "/v1/accounts/{account}/keys", `{"name":"k","expireTime":"2020-01-01T00:00:00Z"}`},
		{"GET", "/v1/keys/{key}", ""},
		{"POST", "/v1/keys/{key}:rotate", `{"gracePeriod":"1.5s"}`},
		{"POST", "/v1/keys/{key}:revoke", ""},
		{"POST", "/v1/keys/{key}:rotate", `{}`}, // revoked: 409
		{"POST", "/v1/accounts", bigBody()},
		{"GET", "/v1/openapi.json", ""},
	} {
		e.call(t, c.method, fill(c.path, ids), fill(c.body, ids))
	}
	e.callWith(t, "GET", "/v1/accounts", "", "")
	// Each route again for an unknown account or key.
	for p, item := range api.doc.Paths.Map() {
		for method := range item.Operations() {
			if p != "/v1/openapi.json" {
				e.call(t, method, fill(p, other), "")
			}
		}
	}

	e.mu.Lock()
	for p, item := range api.doc.Paths.Map() {
		for method, op := range item.Operations() {
			var ok, failed bool
			for _, status := range e.answered[op.OperationID] {
				ok = ok || status == http.StatusOK
				failed = failed || status/100 == 4
			}
			if !ok || (!failed && p != "/v1/openapi.json") {
				t.Errorf("%s %s (%s) answered %v, want a 200 and a 4xx", method, p, op.OperationID, e.answered[op.OperationID])
			}
		}
	}
	e.mu.Unlock()

	// Nothing else answers: other methods on the document's paths, and paths
	// next to them.
	paths := []string{"/", "/v1", "/v1/", "/v1/accounts/", "/v2/accounts", "/v1/keys", "/v1/openapi.json/",
		"/v1/accounts/{account}/", "/v1/accounts/{account}:nope", "/v1/accounts/{account}/ledger:credit",
		"/v1/accounts/{account}/keys/{key}", "/v1/keys/{key}/x", "/v1/keys/{key}:credit"}
	for p := range api.doc.Paths.Map() {
		paths = append(paths, p)
	}
	for _, p := range paths {
		item := api.doc.Paths.Find(p)
		for _, method := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if item != nil && item.GetOperation(method) != nil {
				continue
			}
			r := e.call(t, method, fill(p, ids), "")
			if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: status %d, want 404 or 405: %s", method, p, r.status, r.body)
			}
		}
	}
}
