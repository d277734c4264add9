package admin_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
)

const testToken = "test-admin-token-0123456789"

// env is an admin server on a real bbolt file and a real TCP listener. It
// checks every request and answer against the OpenAPI document.
type env struct {
	clock  *storetest.Clock // shared by the store and the Service
	store  *bolt.Store
	svc    *admin.Service
	srv    *httptest.Server
	client *admin.Client

	mu       sync.Mutex
	bodies   []string         // every body the server answered through env.call
	answered map[string][]int // the statuses answered to each OpenAPI operation
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clock: storetest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), answered: map[string][]int{}}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"), bolt.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	e.store = st
	e.svc = admin.NewService(st, admin.ServiceOptions{Now: e.clock.Now})
	e.srv = httptest.NewServer(e.checkedByOpenAPI(t, admin.NewHandler(e.svc, admin.NewTokens(testToken))))
	t.Cleanup(e.srv.Close)
	e.client = admin.NewClient(e.srv.URL, testToken, e.srv.Client())
	t.Cleanup(func() { e.assertNeverAnswered(t, testToken) })
	return e
}

// response is one raw HTTP answer.
type response struct {
	status int
	header http.Header
	body   string
}

// call sends one request with the admin token.
func (e *env) call(t *testing.T, method, path, body string) response {
	t.Helper()
	return e.callWith(t, method, path, body, "Bearer "+testToken)
}

// callWith sends one request with the given Authorization value ("" for
// none) and records the answer.
func (e *env) callWith(t *testing.T, method, path, body, authorization string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.bodies = append(e.bodies, string(data))
	e.mu.Unlock()
	return response{status: res.StatusCode, header: res.Header, body: string(data)}
}

// assertNeverAnswered fails if s appeared in any body recorded so far.
func (e *env) assertNeverAnswered(t *testing.T, s string) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.bodies {
		if strings.Contains(b, s) {
			t.Errorf("an answer contains %.12s...: %s", s, b)
		}
	}
}

// decode reads a 200 answer into m.
func decode(t *testing.T, r response, m proto.Message) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	if err := protojson.Unmarshal([]byte(r.body), m); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// bigBody is a JSON object just over the 1 MiB limit.
func bigBody() string {
	var b bytes.Buffer
	b.WriteString(`{"name":"`)
	b.Write(bytes.Repeat([]byte("a"), 1<<20))
	b.WriteString(`"}`)
	return b.String()
}
