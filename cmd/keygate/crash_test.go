package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

var (
	crashKills = flag.Int("crash-kills", 25, "how many times TestCrashRecovery kills keygate serve with SIGKILL")
	crashSeed  = flag.Uint64("crash-seed", 0, "random seed of TestCrashRecovery; 0 picks one")
)

// TestCrashRecovery runs keygate serve as a child process under concurrent
// admin writes and Checks, kills it with SIGKILL at a random moment,
// checks the file with bbolt's own consistency check, restarts it and
// checks that every acknowledged write is there, that every account's
// ledger is whole and sums to its balance, that idempotency keys still
// deduplicate, and that no Check allowed a key after its revocation was
// acknowledged. -crash-kills sets the number of kills.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills the binary many times")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -crash-seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	db := filepath.Join(t.TempDir(), "keygate.db")
	m := new(crashModel)
	for kill := 0; kill <= *crashKills; kill++ {
		s := startServer(t, db)
		c := s.adminClient(t)
		conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		m.verify(t, authv3.NewAuthorizationClient(conn), c)
		m.resolve(t, c)
		if kill == *crashKills {
			conn.Close()
			s.stop()
			break
		}

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 4 {
			r := rand.New(rand.NewPCG(seed, uint64(kill)<<8|uint64(w)))
			wg.Go(func() { m.write(ctx, c, r) })
		}
		for w := range 2 {
			r := rand.New(rand.NewPCG(seed, uint64(kill)<<8|uint64(w+4)))
			wg.Go(func() { m.check(ctx, authv3.NewAuthorizationClient(conn), r) })
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // the random moment
		s.kill()
		cancel()
		wg.Wait()
		conn.Close()
		m.stats.kills++
		checkBoltFile(t, db)
		if t.Failed() {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.violations {
		t.Error(v)
	}
	t.Logf("%d kills; %d writes acknowledged, all found after restarts; %d credits and debits sent but unanswered at a kill, %d of them found committed (whole), the rest absent; %d checks (%d allowed); %d replays of committed writes deduplicated after a restart",
		m.stats.kills, m.stats.acked, m.stats.unanswered, m.stats.foundCommitted, m.stats.checks.Load(), m.stats.allowed.Load(), m.stats.deduped)
}

// kill sends SIGKILL and waits for the process to die.
func (s *server) kill() {
	s.t.Helper()
	s.cmd.Process.Kill()
	<-s.done
}

// adminClient is an admin API client of s, with the token serve generated.
func (s *server) adminClient(t *testing.T) *admin.Client {
	t.Helper()
	token, err := readToken(s.db + ".admin-token")
	if err != nil {
		t.Fatal(err)
	}
	return admin.NewClient("http://"+s.admin, token, &http.Client{Timeout: 10 * time.Second})
}

// checkBoltFile runs bbolt's consistency check on a closed database.
func checkBoltFile(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open after kill: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("bbolt check after kill: %v", err)
	}
}

// crashModel is what the writers were told: the acknowledged writes, and
// the writes sent but not answered when the server died.
type crashModel struct {
	mu         sync.Mutex
	accounts   []string
	keys       []*crashKey
	ops        []*crashOp // every credit and debit sent
	violations []string
	stats      struct {
		kills, acked, unanswered, foundCommitted, deduped int
		checks, allowed                                   atomic.Int64
	}
}

type crashKey struct {
	id, account, secret string
	revokeSent          bool        // a revoke or rotation was sent; guarded by mu
	revoked             atomic.Bool // a revoke or rotation was acknowledged
}

// crashOp is a credit or debit with its own idempotency key.
type crashOp struct {
	account, idem string
	credit        bool
	amount        int64
	acked         bool
	found         bool  // unacknowledged, and found committed after the restart
	seq           int64 // when acked or found
}

func (m *crashModel) violation(format string, args ...any) {
	m.mu.Lock()
	m.violations = append(m.violations, fmt.Sprintf(format, args...))
	m.mu.Unlock()
}

// write sends random writes until one fails.
func (m *crashModel) write(ctx context.Context, c *admin.Client, r *rand.Rand) {
	for ok := true; ok; {
		m.mu.Lock()
		nAccounts, nKeys := len(m.accounts), len(m.keys)
		var account string
		var key *crashKey
		if nAccounts > 0 {
			account = m.accounts[r.IntN(nAccounts)]
		}
		if nKeys > 0 {
			if k := m.keys[r.IntN(nKeys)]; !k.revokeSent {
				key = k
			}
		}
		m.mu.Unlock()
		switch p := r.IntN(100); {
		case nAccounts == 0 || p < 3 && nAccounts < 40:
			a, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "crash", Balance: 1000 + r.Int64N(9000)})
			ok = m.ack(err, "create account", func() { m.accounts = append(m.accounts, a.Id) })
		case p < 15 && nKeys < 400:
			resp, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: account, Name: "k"})
			ok = m.ack(err, "create key", func() {
				m.keys = append(m.keys, &crashKey{id: resp.Key.Id, account: account, secret: resp.Secret})
			})
		case p < 25 && key != nil:
			m.sendRevoke(key)
			var err error
			if p < 20 {
				_, err = c.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: key.id})
				ok = m.ack(err, "revoke", func() { key.revoked.Store(true) })
			} else {
				var resp *adminv1.RotateKeyResponse
				resp, err = c.RotateKey(ctx, &adminv1.RotateKeyRequest{Key: key.id})
				ok = m.ack(err, "rotate", func() {
					key.revoked.Store(true)
					m.keys = append(m.keys, &crashKey{id: resp.Key.Id, account: key.account, secret: resp.Secret})
				})
			}
		default:
			m.mu.Lock()
			op := &crashOp{account: account, idem: fmt.Sprintf("op-%d", len(m.ops)), credit: p < 60, amount: 1 + r.Int64N(100)}
			m.ops = append(m.ops, op)
			m.mu.Unlock()
			e, err := m.send(ctx, c, op)
			ok = m.ack(err, "credit or debit", func() { op.acked, op.seq = true, e.GetSeq() })
		}
	}
}

// sendRevoke marks k as on its way to revocation.
func (m *crashModel) sendRevoke(k *crashKey) {
	m.mu.Lock()
	k.revokeSent = true
	m.mu.Unlock()
}

// ack records an acknowledged write with apply, under mu, and reports
// whether it was one. An error answer is a violation: no write of this test
// should get one; any other error means the server is gone.
func (m *crashModel) ack(err error, what string, apply func()) bool {
	var apiErr *admin.APIError
	switch {
	case errors.As(err, &apiErr):
		m.violation("%s: the server answered %v", what, apiErr)
		return false
	case err != nil:
		return false
	}
	m.mu.Lock()
	apply()
	m.stats.acked++
	m.mu.Unlock()
	return true
}

func (m *crashModel) send(ctx context.Context, c *admin.Client, op *crashOp) (*adminv1.LedgerEntry, error) {
	if op.credit {
		return c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: op.account, Amount: op.amount, IdempotencyKey: op.idem})
	}
	return c.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: op.account, Amount: op.amount, IdempotencyKey: op.idem})
}

// check sends Checks for random keys until ctx is done, and records a
// violation when a key is allowed after its revocation was acknowledged.
func (m *crashModel) check(ctx context.Context, client authv3.AuthorizationClient, r *rand.Rand) {
	for ctx.Err() == nil {
		m.mu.Lock()
		if len(m.keys) == 0 {
			m.mu.Unlock()
			continue
		}
		k := m.keys[r.IntN(len(m.keys))]
		m.mu.Unlock()
		wasRevoked := k.revoked.Load()
		resp, err := client.Check(ctx, envoyRequest("Bearer "+k.secret))
		if err != nil {
			continue // the server is gone
		}
		m.stats.checks.Add(1)
		if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
			m.stats.allowed.Add(1)
			if wasRevoked {
				m.violation("key %s allowed after its revocation was acknowledged", k.id)
			}
		}
	}
}

// verify compares what a restarted server holds with the model.
func (m *crashModel) verify(t *testing.T, check authv3.AuthorizationClient, c *admin.Client) {
	t.Helper()
	ctx := context.Background()
	m.mu.Lock()
	defer m.mu.Unlock()
	accounts := listAll(t, func(token string) ([]*adminv1.Account, string, error) {
		r, err := c.ListAccounts(ctx, &adminv1.ListAccountsRequest{PageSize: 1000, PageToken: token})
		return r.GetAccounts(), r.GetNextPageToken(), err
	})
	byID := make(map[string]*adminv1.Account)
	for _, a := range accounts {
		byID[a.Id] = a
	}
	for _, id := range m.accounts {
		if byID[id] == nil {
			t.Errorf("acknowledged account %s is gone", id)
		}
	}
	ops := make(map[string]*crashOp)
	for _, op := range m.ops {
		ops[op.account+"/"+op.idem] = op
	}
	keys := make(map[string]*adminv1.Key)
	committed := make(map[string]int64) // idempotency key -> seq
	for _, a := range accounts {
		verifyLedger(t, ctx, c, a, ops, committed)
		for _, k := range listAll(t, func(token string) ([]*adminv1.Key, string, error) {
			r, err := c.ListKeys(ctx, &adminv1.ListKeysRequest{Account: a.Id, PageSize: 1000, PageToken: token})
			return r.GetKeys(), r.GetNextPageToken(), err
		}) {
			keys[k.Id] = k
		}
	}
	for _, op := range m.ops {
		seq, ok := committed[op.account+"/"+op.idem]
		switch {
		case op.acked && (!ok || seq != op.seq):
			t.Errorf("acknowledged %s of %d (%s, seq %d) on %s: found seq %d", kindOf(op), op.amount, op.idem, op.seq, op.account, seq)
		case !op.acked && ok:
			op.found, op.seq = true, seq
		}
	}
	for _, k := range keys {
		if k.ReplacedBy != "" && keys[k.ReplacedBy] == nil {
			t.Errorf("key %s is replaced by %s, which does not exist", k.Id, k.ReplacedBy)
		}
	}
	for _, k := range m.keys {
		got := keys[k.id]
		switch {
		case got == nil:
			t.Errorf("acknowledged key %s is gone", k.id)
		case k.revoked.Load() && got.State != "revoked":
			t.Errorf("key %s was revoked, now %s", k.id, got.State)
		case !k.revokeSent && got.State != "active":
			t.Errorf("key %s was never revoked, now %s", k.id, got.State)
		}
		want := http.StatusUnauthorized
		if got != nil && got.State == "active" {
			want = http.StatusForbidden
			if byID[k.account].GetBalance() > 0 {
				want = http.StatusOK
			}
		}
		resp, err := check.Check(ctx, envoyRequest("Bearer "+k.secret))
		if err != nil {
			t.Fatal(err)
		}
		if code := httpStatusOf(resp); code != want {
			t.Errorf("key %s (%s, balance %d) answers %d, want %d", k.id, got.GetState(), byID[k.account].GetBalance(), code, want)
		}
		if got != nil && got.State != "active" && k.revokeSent {
			k.revoked.Store(true) // a revocation in flight at the kill landed
		}
		if got != nil && got.State == "active" {
			k.revokeSent = false // it did not; the key can be revoked again
		}
	}
}

// verifyLedger checks that an account's ledger is whole: seqs count up from
// 1, each balance follows from the one before, the last is the account's
// balance, and every idempotency key is one the model sent, once, with its
// amount. It records each committed idempotency key's seq.
func verifyLedger(t *testing.T, ctx context.Context, c *admin.Client, a *adminv1.Account, ops map[string]*crashOp, committed map[string]int64) {
	t.Helper()
	entries := listAll(t, func(token string) ([]*adminv1.LedgerEntry, string, error) {
		r, err := c.ListLedger(ctx, &adminv1.ListLedgerRequest{Account: a.Id, PageSize: 1000, PageToken: token})
		return r.GetEntries(), r.GetNextPageToken(), err
	})
	var sum int64
	for i, e := range entries {
		switch {
		case e.Seq != int64(i+1):
			t.Errorf("account %s: entry %d has seq %d", a.Id, i+1, e.Seq)
		case e.Kind == "open" && i == 0:
			sum = e.Amount
		case e.Kind == "credit":
			sum += e.Amount
		case e.Kind == "debit":
			sum -= e.Amount
		default:
			t.Errorf("account %s: unexpected %s entry at seq %d", a.Id, e.Kind, e.Seq)
		}
		if e.BalanceAfter != sum {
			t.Errorf("account %s: seq %d says balance %d, the entries before it sum to %d", a.Id, e.Seq, e.BalanceAfter, sum)
		}
		if e.Kind == "open" {
			continue
		}
		id := a.Id + "/" + e.IdempotencyKey
		op := ops[id]
		switch _, dup := committed[id]; {
		case op == nil:
			t.Errorf("account %s: seq %d has idempotency key %q, which was never sent", a.Id, e.Seq, e.IdempotencyKey)
		case dup:
			t.Errorf("account %s: idempotency key %q is in the ledger twice", a.Id, e.IdempotencyKey)
		case e.Kind != kindOf(op) || e.Amount != op.amount:
			t.Errorf("account %s: %q is a %s of %d, was sent as a %s of %d", a.Id, e.IdempotencyKey, e.Kind, e.Amount, kindOf(op), op.amount)
		}
		committed[id] = e.Seq
	}
	if sum != a.Balance {
		t.Errorf("account %s: balance %d, its ledger sums to %d", a.Id, a.Balance, sum)
	}
}

func kindOf(op *crashOp) string {
	if op.credit {
		return "credit"
	}
	return "debit"
}

// resolve settles the writes that were unanswered at the kill: it replays
// every unacknowledged credit and debit, which must return the committed
// entry if verify found one. It also replays the 20 newest acknowledged
// ones, which must return their entry.
func (m *crashModel) resolve(t *testing.T, c *admin.Client) {
	t.Helper()
	ctx := context.Background()
	m.mu.Lock()
	defer m.mu.Unlock()
	sampled := 0
	for i := len(m.ops) - 1; i >= 0; i-- {
		op := m.ops[i]
		if op.acked && sampled >= 20 {
			continue
		}
		e, err := m.send(ctx, c, op)
		if err != nil {
			t.Fatalf("replaying %s after a restart: %v", op.idem, err)
		}
		if op.acked || op.found {
			m.stats.deduped++
			if e.Seq != op.seq {
				t.Errorf("replay of committed %s gave seq %d, want %d: not deduplicated", op.idem, e.Seq, op.seq)
			}
		}
		if op.acked {
			sampled++
			continue
		}
		m.stats.unanswered++
		if op.found {
			m.stats.foundCommitted++
		}
		op.acked, op.seq = true, e.Seq
	}
}

// listAll reads every page of a list.
func listAll[T any](t *testing.T, page func(token string) ([]T, string, error)) []T {
	t.Helper()
	var all []T
	for token := ""; ; {
		items, next, err := page(token)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, items...)
		if next == "" {
			return all
		}
		token = next
	}
}
