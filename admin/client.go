package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

const (
	defaultClientTimeout = 30 * time.Second
	maxResponseBytes     = 64 << 20
)

// unmarshalJSON reads answers; it ignores fields a newer server may add.
var unmarshalJSON = protojson.UnmarshalOptions{DiscardUnknown: true}

// APIError is an error answer of the admin API.
type APIError struct {
	HTTPStatus int    // as 404
	Code       string // as "not_found"; empty when the body was not a keygate error
	Message    string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("keygate admin: HTTP %d: %s", e.HTTPStatus, e.Message)
	}
	return fmt.Sprintf("keygate admin: %s (HTTP %d): %s", e.Code, e.HTTPStatus, e.Message)
}

// Client calls the admin API over JSON/HTTP. Its methods mirror
// adminv1.AdminClient; errors answered by the server are *APIError. It is
// safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a Client for the server at baseURL, as
// "http://127.0.0.1:8081", that presents token. A nil hc means an
// http.Client with a 30-second timeout.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: defaultClientTimeout}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// CreateAccount calls POST /v1/accounts.
func (c *Client) CreateAccount(ctx context.Context, req *adminv1.CreateAccountRequest) (*adminv1.Account, error) {
	return invoke[adminv1.Account](ctx, c, adminv1.Admin_CreateAccount_FullMethodName, req)
}

// GetAccount calls GET /v1/accounts/{account}.
func (c *Client) GetAccount(ctx context.Context, req *adminv1.GetAccountRequest) (*adminv1.Account, error) {
	return invoke[adminv1.Account](ctx, c, adminv1.Admin_GetAccount_FullMethodName, req)
}

// ListAccounts calls GET /v1/accounts.
func (c *Client) ListAccounts(ctx context.Context, req *adminv1.ListAccountsRequest) (*adminv1.ListAccountsResponse, error) {
	return invoke[adminv1.ListAccountsResponse](ctx, c, adminv1.Admin_ListAccounts_FullMethodName, req)
}

// CreditAccount calls POST /v1/accounts/{account}:credit.
func (c *Client) CreditAccount(ctx context.Context, req *adminv1.CreditAccountRequest) (*adminv1.LedgerEntry, error) {
	return invoke[adminv1.LedgerEntry](ctx, c, adminv1.Admin_CreditAccount_FullMethodName, req)
}

// DebitAccount calls POST /v1/accounts/{account}:debit.
func (c *Client) DebitAccount(ctx context.Context, req *adminv1.DebitAccountRequest) (*adminv1.LedgerEntry, error) {
	return invoke[adminv1.LedgerEntry](ctx, c, adminv1.Admin_DebitAccount_FullMethodName, req)
}

// DisableAccount calls POST /v1/accounts/{account}:disable.
func (c *Client) DisableAccount(ctx context.Context, req *adminv1.DisableAccountRequest) (*adminv1.Account, error) {
	return invoke[adminv1.Account](ctx, c, adminv1.Admin_DisableAccount_FullMethodName, req)
}

// EnableAccount calls POST /v1/accounts/{account}:enable.
func (c *Client) EnableAccount(ctx context.Context, req *adminv1.EnableAccountRequest) (*adminv1.Account, error) {
	return invoke[adminv1.Account](ctx, c, adminv1.Admin_EnableAccount_FullMethodName, req)
}

// ListLedger calls GET /v1/accounts/{account}/ledger.
func (c *Client) ListLedger(ctx context.Context, req *adminv1.ListLedgerRequest) (*adminv1.ListLedgerResponse, error) {
	return invoke[adminv1.ListLedgerResponse](ctx, c, adminv1.Admin_ListLedger_FullMethodName, req)
}

// CreateKey calls POST /v1/accounts/{account}/keys.
func (c *Client) CreateKey(ctx context.Context, req *adminv1.CreateKeyRequest) (*adminv1.CreateKeyResponse, error) {
	return invoke[adminv1.CreateKeyResponse](ctx, c, adminv1.Admin_CreateKey_FullMethodName, req)
}

// ListKeys calls GET /v1/accounts/{account}/keys.
func (c *Client) ListKeys(ctx context.Context, req *adminv1.ListKeysRequest) (*adminv1.ListKeysResponse, error) {
	return invoke[adminv1.ListKeysResponse](ctx, c, adminv1.Admin_ListKeys_FullMethodName, req)
}

// GetKey calls GET /v1/keys/{key}.
func (c *Client) GetKey(ctx context.Context, req *adminv1.GetKeyRequest) (*adminv1.Key, error) {
	return invoke[adminv1.Key](ctx, c, adminv1.Admin_GetKey_FullMethodName, req)
}

// RevokeKey calls POST /v1/keys/{key}:revoke.
func (c *Client) RevokeKey(ctx context.Context, req *adminv1.RevokeKeyRequest) (*adminv1.Key, error) {
	return invoke[adminv1.Key](ctx, c, adminv1.Admin_RevokeKey_FullMethodName, req)
}

// RotateKey calls POST /v1/keys/{key}:rotate.
func (c *Client) RotateKey(ctx context.Context, req *adminv1.RotateKeyRequest) (*adminv1.RotateKeyResponse, error) {
	return invoke[adminv1.RotateKeyResponse](ctx, c, adminv1.Admin_RotateKey_FullMethodName, req)
}

// invoke calls the route of rpc and decodes its answer into a new T.
func invoke[T any, R interface {
	*T
	proto.Message
}](ctx context.Context, c *Client, rpc string, req proto.Message) (R, error) {
	resp := R(new(T))
	if err := c.do(ctx, routeByRPC[rpc], req, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, rt *route, req, resp proto.Message) error {
	target, body, err := encodeRequest(rt, req)
	if err != nil {
		return err
	}
	u := c.base + target
	hr, err := http.NewRequestWithContext(ctx, rt.method, u, body)
	if err != nil {
		return fmt.Errorf("keygate admin: %w", err)
	}
	hr.Header.Set("Accept", "application/json")
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.hc.Do(hr)
	if err != nil {
		return fmt.Errorf("keygate admin: %w", err) // a *url.Error, which names the method and URL
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("keygate admin: %s %s: reading the answer: %w", rt.method, u, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return apiError(res.StatusCode, data)
	}
	if err := unmarshalJSON.Unmarshal(data, resp); err != nil {
		return fmt.Errorf("keygate admin: %s %s: decoding the answer: %w", rt.method, u, err)
	}
	return nil
}

// encodeRequest builds the path and query, or the body, of req for rt.
func encodeRequest(rt *route, req proto.Message) (target string, body io.Reader, err error) {
	m := req.ProtoReflect()
	target = rt.path
	if rt.param != nil {
		id := m.Get(rt.param).String()
		if id == "" {
			return "", nil, fmt.Errorf("keygate admin: the request's %s is empty", rt.param.Name())
		}
		target = strings.Replace(target, "{"+string(rt.param.Name())+"}", url.PathEscape(id), 1)
	}
	if rt.verb != "" {
		target += ":" + rt.verb
	}
	if rt.method == http.MethodGet {
		q := url.Values{}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd != rt.param {
				q.Set(fd.JSONName(), v.String())
			}
			return true
		})
		if len(q) > 0 {
			target += "?" + q.Encode()
		}
		return target, nil, nil
	}
	data, err := protojson.Marshal(req)
	if err != nil {
		return "", nil, fmt.Errorf("keygate admin: encoding the request: %w", err)
	}
	return target, bytes.NewReader(data), nil
}

// apiError reads an error answer. A body that is not a keygate error, as
// from a proxy in between, leaves Code empty.
func apiError(code int, data []byte) *APIError {
	var b errorBody
	if json.Unmarshal(data, &b) == nil && b.Error.Code != "" {
		return &APIError{HTTPStatus: code, Code: b.Error.Code, Message: b.Error.Message}
	}
	return &APIError{HTTPStatus: code, Message: http.StatusText(code)}
}
