package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/authz"
)

// keysPerAccount is how many keys each account of a data set holds.
const keysPerAccount = 10

// dataSet is the keys of one run, as each server loads them, and the
// requests the load generator sends.
type dataSet struct {
	keys       int
	importFile string   // keygate import JSON Lines (SHA-256 hashes)
	opaFile    string   // OPA data document
	requests   [][]byte // encoded CheckRequests, validShare of them with a stored key
	probe      []byte   // a request with a stored key, for readiness
}

// validShare of the requests carry a stored key; the rest carry well-formed
// keys that are not stored.
const validShare = 0.9

// newDataSet makes n keys in dir, and nRequests requests over them.
func newDataSet(dir string, n, nRequests int) (*dataSet, error) {
	d := &dataSet{keys: n, importFile: fmt.Sprintf("%s/keys-%d.jsonl", dir, n), opaFile: fmt.Sprintf("%s/opa-%d.json", dir, n)}
	imp, err := os.Create(d.importFile)
	if err != nil {
		return nil, err
	}
	defer imp.Close()
	opa, err := os.Create(d.opaFile)
	if err != nil {
		return nil, err
	}
	defer opa.Close()
	iw, ow := bufio.NewWriterSize(imp, 1<<20), bufio.NewWriterSize(opa, 1<<20)

	valid := int(validShare * float64(nRequests))
	stride := max(1, n/valid) // spread the requests' keys over the whole set
	var sample []string
	fmt.Fprint(ow, `{"keygate":{"keys":{`)
	for i := 0; i < n; i += keysPerAccount {
		fmt.Fprintf(iw, `{"name":"bench %d","balance":1000000,"keys":[`, i/keysPerAccount)
		for j := i; j < min(n, i+keysPerAccount); j++ {
			secret := authz.NewSecret()
			if j%stride == 0 && len(sample) < valid {
				sample = append(sample, secret)
			}
			h := authz.HashSecret(secret)
			hx := hex.EncodeToString(h[:])
			if j > i {
				iw.WriteByte(',')
			}
			fmt.Fprintf(iw, `{"name":"k%d","sha256":"%s"}`, j, hx)
			if j > 0 {
				ow.WriteByte(',')
			}
			fmt.Fprintf(ow, `"%s":{"account_id":"acct_%d","key_id":"key_%d"}`, hx, i/keysPerAccount, j)
		}
		iw.WriteString("]}\n")
	}
	ow.WriteString("}}}\n")
	if err := iw.Flush(); err != nil {
		return nil, err
	}
	if err := ow.Flush(); err != nil {
		return nil, err
	}
	for len(sample) < valid { // small sets: use keys more than once
		sample = append(sample, sample[len(sample)%max(1, len(sample))])
	}
	d.probe, err = proto.Marshal(envoyCheck("Bearer " + sample[0]))
	if err != nil {
		return nil, err
	}
	// Every tenth request carries an unknown key, in a fixed order.
	for i, v := 0, 0; i < nRequests; i++ {
		secret := authz.NewSecret()
		if i%10 != 9 && v < len(sample) {
			secret = sample[v]
			v++
		}
		b, err := proto.Marshal(envoyCheck("Bearer " + secret))
		if err != nil {
			return nil, err
		}
		d.requests = append(d.requests, b)
	}
	return d, errors.Join(imp.Close(), opa.Close())
}

// envoyCheck is the CheckRequest Envoy's HTTP ext_authz filter sends for a
// POST /v1/chat/completions through one proxy: 14 headers, the peers, the
// time.
func envoyCheck(authorization string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":               "api.example.com",
		":path":                    "/v1/chat/completions?stream=true",
		":method":                  "POST",
		":scheme":                  "https",
		"user-agent":               "OpenAI/Python 1.54.0",
		"accept":                   "application/json",
		"content-type":             "application/json",
		"content-length":           "187",
		"x-forwarded-for":          "203.0.113.7, 198.51.100.23",
		"x-forwarded-proto":        "https",
		"x-request-id":             "6b1d2c9e-6f3a-4c55-9d0e-2f8a1b7c4d10",
		"x-envoy-external-address": "198.51.100.23",
		"openai-organization":      "org-benchmark",
		"authorization":            authorization,
	}
	peer := func(ip string, port uint32) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.0.3.17", 51234),
		Destination: peer("10.0.0.5", 8080),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       "11537406282374925396",
				Method:   "POST",
				Headers:  headers,
				Path:     "/v1/chat/completions?stream=true",
				Host:     "api.example.com",
				Scheme:   "https",
				Size:     187,
				Protocol: "HTTP/1.1",
			},
		},
		MetadataContext: &corev3.Metadata{},
	}}
}

// opaConfig writes OPA-Envoy's configuration: the gRPC plugin on addr and
// the policy's result; no bundles, no decision logs.
func opaConfig(path, addr string) error {
	cfg := map[string]any{"plugins": map[string]any{"envoy_ext_authz_grpc": map[string]any{
		"addr": addr, "path": "keygate/authz/result", "enable-reflection": false,
	}}}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
