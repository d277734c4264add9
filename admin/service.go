package admin

import (
	"context"
	"log/slog"
	"time"

	"github.com/keygate/keygate/authz"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// Service implements the admin API over an authz.Store. Its methods return
// gRPC status errors, so it serves gRPC as it is and HTTP through
// NewHandler. It is safe for concurrent use.
type Service struct {
	adminv1.UnimplementedAdminServer
	store authz.Store
	now   func() time.Time
	log   *slog.Logger
}

// ServiceOptions configures a Service. The zero value is ready to use.
type ServiceOptions struct {
	Now    func() time.Time // the clock that decides key states and expiry checks; nil = time.Now
	Logger *slog.Logger     // where internal errors and an unavailable store are logged; nil = discard
}

// NewService returns a Service over store.
func NewService(store authz.Store, opts ServiceOptions) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, now: opts.Now, log: opts.Logger}
}

// CreateAccount creates an account with an opening balance of zero or more.
func (s *Service) CreateAccount(ctx context.Context, req *adminv1.CreateAccountRequest) (*adminv1.Account, error) {
	if err := (authz.NewAccount{Name: req.GetName(), Balance: req.GetBalance()}).Validate(); err != nil {
		return nil, s.toStatus(err)
	}
	a, err := s.store.CreateAccount(ctx, req.GetName(), req.GetBalance())
	if err != nil {
		return nil, s.toStatus(err)
	}
	return accountProto(a), nil
}

// GetAccount returns one account.
func (s *Service) GetAccount(ctx context.Context, req *adminv1.GetAccountRequest) (*adminv1.Account, error) {
	if err := authz.ValidateAccountID(req.GetAccount()); err != nil {
		return nil, s.toStatus(err)
	}
	a, err := s.store.Account(ctx, req.GetAccount())
	if err != nil {
		return nil, s.toStatus(err)
	}
	return accountProto(a), nil
}

// ListAccounts returns a page of accounts in creation order.
func (s *Service) ListAccounts(ctx context.Context, req *adminv1.ListAccountsRequest) (*adminv1.ListAccountsResponse, error) {
	page, err := pageFromProto(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus(err)
	}
	accounts, next, err := s.store.Accounts(ctx, page)
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &adminv1.ListAccountsResponse{NextPageToken: next}
	for _, a := range accounts {
		resp.Accounts = append(resp.Accounts, accountProto(a))
	}
	return resp, nil
}

// CreditAccount tops up a balance. A replay with the same idempotency key
// and amount returns the first entry and changes nothing.
func (s *Service) CreditAccount(ctx context.Context, req *adminv1.CreditAccountRequest) (*adminv1.LedgerEntry, error) {
	return s.changeBalance(ctx, authz.BalanceChange{
		AccountID:      req.GetAccount(),
		Kind:           authz.LedgerCredit,
		Amount:         req.GetAmount(),
		IdempotencyKey: req.GetIdempotencyKey(),
	})
}

// DebitAccount records usage, optionally attributed to a key. Replays
// behave as for CreditAccount.
func (s *Service) DebitAccount(ctx context.Context, req *adminv1.DebitAccountRequest) (*adminv1.LedgerEntry, error) {
	return s.changeBalance(ctx, authz.BalanceChange{
		AccountID:      req.GetAccount(),
		Kind:           authz.LedgerDebit,
		Amount:         req.GetAmount(),
		IdempotencyKey: req.GetIdempotencyKey(),
		KeyID:          req.GetKey(),
	})
}

func (s *Service) changeBalance(ctx context.Context, c authz.BalanceChange) (*adminv1.LedgerEntry, error) {
	if err := c.Validate(); err != nil {
		return nil, s.toStatus(err)
	}
	e, err := s.store.ChangeBalance(ctx, c)
	if err != nil {
		return nil, s.toStatus(err)
	}
	return entryProto(e), nil
}

// DisableAccount stops every key of the account until EnableAccount.
func (s *Service) DisableAccount(ctx context.Context, req *adminv1.DisableAccountRequest) (*adminv1.Account, error) {
	return s.setStatus(ctx, req.GetAccount(), authz.AccountDisabled)
}

// EnableAccount undoes DisableAccount.
func (s *Service) EnableAccount(ctx context.Context, req *adminv1.EnableAccountRequest) (*adminv1.Account, error) {
	return s.setStatus(ctx, req.GetAccount(), authz.AccountActive)
}

func (s *Service) setStatus(ctx context.Context, id string, st authz.AccountStatus) (*adminv1.Account, error) {
	if err := authz.ValidateAccountID(id); err != nil {
		return nil, s.toStatus(err)
	}
	a, err := s.store.SetAccountStatus(ctx, id, st)
	if err != nil {
		return nil, s.toStatus(err)
	}
	return accountProto(a), nil
}

// ListLedger returns a page of an account's ledger, oldest first.
func (s *Service) ListLedger(ctx context.Context, req *adminv1.ListLedgerRequest) (*adminv1.ListLedgerResponse, error) {
	if err := authz.ValidateAccountID(req.GetAccount()); err != nil {
		return nil, s.toStatus(err)
	}
	page, err := pageFromProto(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus(err)
	}
	entries, next, err := s.store.Ledger(ctx, req.GetAccount(), page)
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &adminv1.ListLedgerResponse{NextPageToken: next}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, entryProto(e))
	}
	return resp, nil
}

// CreateKey issues a key for an account. The secret is in the response and
// nowhere else: the store keeps only its hash and hint.
func (s *Service) CreateKey(ctx context.Context, req *adminv1.CreateKeyRequest) (*adminv1.CreateKeyResponse, error) {
	expire, err := timeFromProto("expire time", req.GetExpireTime())
	if err != nil {
		return nil, s.toStatus(err)
	}
	secret, nk := newKey()
	nk.AccountID, nk.Name, nk.ExpireTime = req.GetAccount(), req.GetName(), expire
	now := s.now()
	if err := nk.Validate(now); err != nil {
		return nil, s.toStatus(err)
	}
	k, err := s.store.CreateKey(ctx, nk)
	if err != nil {
		return nil, s.toStatus(err)
	}
	return &adminv1.CreateKeyResponse{Key: keyProto(k, now), Secret: secret}, nil
}

// GetKey returns one key, without its secret.
func (s *Service) GetKey(ctx context.Context, req *adminv1.GetKeyRequest) (*adminv1.Key, error) {
	if err := authz.ValidateKeyID(req.GetKey()); err != nil {
		return nil, s.toStatus(err)
	}
	k, err := s.store.Key(ctx, req.GetKey())
	if err != nil {
		return nil, s.toStatus(err)
	}
	return keyProto(k, s.now()), nil
}

// ListKeys returns a page of an account's keys, oldest first.
func (s *Service) ListKeys(ctx context.Context, req *adminv1.ListKeysRequest) (*adminv1.ListKeysResponse, error) {
	if err := authz.ValidateAccountID(req.GetAccount()); err != nil {
		return nil, s.toStatus(err)
	}
	page, err := pageFromProto(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus(err)
	}
	keys, next, err := s.store.Keys(ctx, req.GetAccount(), page)
	if err != nil {
		return nil, s.toStatus(err)
	}
	now := s.now()
	resp := &adminv1.ListKeysResponse{NextPageToken: next}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, keyProto(k, now))
	}
	return resp, nil
}

// RevokeKey stops a key at once. Revoking a revoked key returns it unchanged.
func (s *Service) RevokeKey(ctx context.Context, req *adminv1.RevokeKeyRequest) (*adminv1.Key, error) {
	if err := authz.ValidateKeyID(req.GetKey()); err != nil {
		return nil, s.toStatus(err)
	}
	k, err := s.store.RevokeKey(ctx, req.GetKey())
	if err != nil {
		return nil, s.toStatus(err)
	}
	return keyProto(k, s.now()), nil
}

// RotateKey issues a replacement for an active key, with the same account
// and name and no expiry, and lets the old key work for the grace period.
// The new secret is in the response and nowhere else.
func (s *Service) RotateKey(ctx context.Context, req *adminv1.RotateKeyRequest) (*adminv1.RotateKeyResponse, error) {
	if err := authz.ValidateKeyID(req.GetKey()); err != nil {
		return nil, s.toStatus(err)
	}
	grace, err := durationFromProto("grace period", req.GetGracePeriod())
	if err == nil {
		err = authz.ValidateGrace(grace)
	}
	if err != nil {
		return nil, s.toStatus(err)
	}
	secret, nk := newKey()
	old, created, err := s.store.RotateKey(ctx, req.GetKey(), grace, nk)
	if err != nil {
		return nil, s.toStatus(err)
	}
	now := s.now()
	return &adminv1.RotateKeyResponse{
		Key:      keyProto(created, now),
		Secret:   secret,
		Previous: keyProto(old, now),
	}, nil
}

// newKey makes a secret and the part of it a store may see.
func newKey() (secret string, nk authz.NewKey) {
	secret = authz.NewSecret()
	return secret, authz.NewKey{Hash: authz.HashSecret(secret), Hint: authz.SecretHint(secret)}
}
