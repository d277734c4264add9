package envoy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
)

// fuzzSecret is a key stored by FuzzCheck. It is fixed so that the committed
// corpus can hold requests that present it.
const fuzzSecret = "sk-kg-6p7uZ4mQLjQjzuFC1thPMDDcJP6hnodRZTswP2B5vkP0WsKUU"

// FuzzCheck feeds Check the CheckRequest that arbitrary bytes decode to,
// over a real store holding keys in every state. Check must never panic,
// never fail (the store is healthy), allow only a request that carries the
// secret of a stored, usable key, and deny with an explicit 401 or 403, a
// JSON content type and a body that parses.
func FuzzCheck(f *testing.F) {
	fx := newFixture(f)
	fuzzKey := fx.key(f, fx.active.ID, "fuzz", time.Time{})
	if _, err := fx.store.RevokeKey(context.Background(), fuzzKey.ID); err != nil {
		f.Fatal(err)
	}
	stored, err := fx.store.CreateKey(context.Background(), authz.NewKey{
		AccountID: fx.active.ID, Name: "fixed", Hash: authz.HashSecret(fuzzSecret), Hint: authz.SecretHint(fuzzSecret),
	})
	if err != nil {
		f.Fatal(err)
	}
	fx.secret[stored.ID] = fuzzSecret
	usable := map[string]bool{fx.activeKey.ID: true, stored.ID: true}
	srv := envoy.NewServer(fx.authz, nil)

	for _, s := range shapes {
		for _, auth := range [][]string{
			{"Bearer " + fuzzSecret},                           // allowed
			{"bearer  " + fuzzSecret + " "},                    // allowed, odd spacing
			{fuzzSecret},                                       // no scheme
			{"Bearer " + fuzzSecret[:len(fuzzSecret)-1] + "x"}, // wrong checksum
			{"Bearer " + fuzzSecret, "Bearer " + fuzzSecret},   // two headers
			{"Basic dXNlcjpwYXNz"},                             // another scheme
			nil,                                                // no header
		} {
			data, err := proto.Marshal(envoyCheck(s, auth...))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := new(authv3.CheckRequest)
		if proto.Unmarshal(data, req) != nil {
			return
		}
		resp, err := srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check failed on a healthy store: %v", err)
		}
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			id := okHeader(resp, answer.HeaderKeyID)
			if !usable[id] || !bytes.Contains(data, []byte(fx.secret[id])) {
				t.Fatalf("allowed as key %q a request that does not carry its secret", id)
			}
			return
		}
		assertWellFormedDenial(t, resp)
	})
}

// okHeader returns the value of an upstream header set by an allow.
func okHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// assertWellFormedDenial checks what Envoy needs of a denial: a gRPC code
// that matches an explicit 401 or 403 (or 500, for a route whose
// context_extensions do not parse), a JSON content type (and a challenge
// on a 401) and a body that parses as an error object of either style.
func assertWellFormedDenial(t *testing.T, resp *authv3.CheckResponse) {
	t.Helper()
	denied := resp.GetDeniedResponse()
	code, status := codes.Code(resp.GetStatus().GetCode()), denied.GetStatus().GetCode()
	if !(code == codes.Unauthenticated && status == typev3.StatusCode_Unauthorized ||
		code == codes.PermissionDenied && status == typev3.StatusCode_Forbidden ||
		code == codes.Internal && status == typev3.StatusCode_InternalServerError) {
		t.Fatalf("denial with gRPC code %v and HTTP status %v", code, status)
	}
	headers := make(map[string]string)
	for _, h := range denied.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if headers["content-type"] != "application/json" {
		t.Fatalf("denial headers %v: want content-type application/json", headers)
	}
	if status == typev3.StatusCode_Unauthorized && headers["www-authenticate"] == "" {
		t.Fatal("401 without www-authenticate")
	}
	var body struct {
		Error struct{ Message, Type, Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil || body.Error.Message == "" || body.Error.Code == "" && body.Error.Type == "" {
		t.Fatalf("denial body %q: %v", denied.GetBody(), err)
	}
}
