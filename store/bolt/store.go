package bolt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/keyindex"
	"github.com/keygate/keygate/store/record"
)

// ErrLocked is returned (wrapped) by Open when another process, or another
// Store in this process, holds the database file.
var ErrLocked = errors.New("in use by another keygate process")

// ErrNewerSchema is returned (wrapped) by Open for a database written by a
// newer keygate, which this one must not change.
var ErrNewerSchema = errors.New("written by a newer keygate")

// errClosed is returned by every method of a closed Store.
var errClosed = authz.Errorf(authz.EUnavailable, "the store is closed")

// errDiskFull is returned by a write that found no space left for the file.
// The write is rolled back; once space is freed, writes work again.
var errDiskFull = authz.Errorf(authz.EUnavailable, "the database's disk is full; free space and retry")

// schemaVersion is the layout this package reads and writes.
const schemaVersion = 1

// Bucket names.
var (
	bucketMeta        = []byte("meta")
	bucketAccounts    = []byte("accounts")
	bucketKeys        = []byte("keys")
	bucketAccountKeys = []byte("account_keys")
	bucketKeyHashes   = []byte("key_hashes")
	bucketLedger      = []byte("ledger")
	bucketIdempotency = []byte("idempotency")

	allBuckets = [][]byte{bucketMeta, bucketAccounts, bucketKeys, bucketAccountKeys, bucketKeyHashes, bucketLedger, bucketIdempotency}

	metaVersion = []byte("version")
)

// Options configures a Store. The zero value is ready to use.
type Options struct {
	Now           func() time.Time // clock; nil = time.Now
	FlushInterval time.Duration    // how often last-used times are flushed; 0 = 10s
	LockTimeout   time.Duration    // how long Open waits for another process's file lock; 0 = 1s
	// BatchDelay is how long a write waits for others to share its commit
	// (bbolt's MaxBatchDelay); 0 = DefaultBatchDelay.
	BatchDelay time.Duration
	Logger     *slog.Logger // where failed background flushes are logged; nil = discard
}

// Stats counts what a Store holds.
type Stats struct {
	Accounts, Keys int
}

// Store is an authz.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db     *bbolt.DB
	now    func() time.Time
	log    *slog.Logger
	idx    *keyindex.Index
	closed atomic.Bool

	stop      chan struct{} // closed by Close to stop the flusher
	flushDone chan struct{} // closed when the flusher has stopped
	closeOnce sync.Once
	closeErr  error
}

var _ authz.Store = (*Store)(nil)

// Open opens the database at path, creating it (mode 0600) if it does not
// exist, and loads every account and key into memory. It refuses a file
// that is not a bbolt database, is corrupt, is not a keygate database, or
// was written by a newer keygate, and leaves its data alone.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 10 * time.Second
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := openBolt(path, opts.LockTimeout)
	if err != nil {
		return nil, openError(path, opts.LockTimeout, err)
	}
	db.MaxBatchDelay = cmp.Or(opts.BatchDelay, DefaultBatchDelay)
	s := &Store{
		db:        db,
		now:       opts.Now,
		log:       opts.Logger.With("db", path),
		idx:       keyindex.New(),
		stop:      make(chan struct{}),
		flushDone: make(chan struct{}),
	}
	if err := s.prepare(); err != nil {
		db.Close()
		return nil, openError(path, opts.LockTimeout, err)
	}
	go s.flushEvery(opts.FlushInterval)
	return s, nil
}

// openError says what kept the database at path from opening.
func openError(path string, lockTimeout time.Duration, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("database %s is %w (waited %s for its lock): %w", path, ErrLocked, lockTimeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return fmt.Errorf("database %s is not a bbolt database or is corrupt: %w", path, err)
	}
	return fmt.Errorf("database %s: %w", path, err)
}

// initialMmapSize is the address space mapped at first, as etcd does: a
// file that grows within it is never remapped, which would copy every node
// of a large write transaction (such as an Import). It costs no memory.
const initialMmapSize = 2 << 30

// openBolt opens a bbolt file. See recoverCorrupt.
func openBolt(path string, lockTimeout time.Duration) (db *bbolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	return bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout, InitialMmapSize: initialMmapSize})
}

// prepare checks or creates the schema and loads the index. See
// recoverCorrupt.
func (s *Store) prepare() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(&err)
	if err := s.db.Update(initSchema); err != nil {
		return err
	}
	return s.db.View(func(tx *bbolt.Tx) error {
		if err := s.load(tx); err != nil {
			return err
		}
		releasePages(s.db, tx.Size())
		return nil
	})
}

// recoverCorrupt turns into an error the panic, or the fault on a page past
// the end of the file (made a panic by debug.SetPanicOnFault), with which
// bbolt meets some corrupt or truncated files, so that Open can say what is
// wrong instead of crashing. After a panic in bbolt.Open the file stays
// open, and locked, until the process exits.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w (bbolt: %v)", berrors.ErrInvalid, r)
	}
}

// initSchema creates the buckets of an empty database, or checks those of
// an existing one.
func initSchema(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("not a keygate database: it has a bucket %q but no %q bucket", k, bucketMeta)
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaVersion, beUint64(schemaVersion))
	}
	v := meta.Get(metaVersion)
	version, ok := parseBEUint64(v)
	if !ok {
		return fmt.Errorf("corrupt: the schema version is %d bytes long, want 8", len(v))
	}
	switch {
	case version > schemaVersion:
		return fmt.Errorf("%w: schema version %d is newer than this keygate supports (%d); upgrade keygate", ErrNewerSchema, version, schemaVersion)
	case version < 1:
		return fmt.Errorf("corrupt: unknown schema version %d", version)
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("corrupt: bucket %q is missing", name)
		}
	}
	return nil
}

// load fills the index from the accounts and keys buckets.
func (s *Store) load(tx *bbolt.Tx) error {
	rev := revision(tx)
	accounts := tx.Bucket(bucketAccounts)
	err := accounts.ForEach(func(_, v []byte) error {
		r, err := record.Decode[storagev1.AccountRecord](v)
		if err == nil {
			err = s.idx.ApplyAccount(r, rev)
		}
		if err != nil {
			return fmt.Errorf("corrupt: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
		r, err := record.Decode[storagev1.KeyRecord](v)
		switch {
		case err != nil:
			return err
		case accounts.Get([]byte(r.AccountId)) == nil:
			return fmt.Errorf("corrupt: key %s belongs to account %s, which does not exist", k, r.AccountId)
		}
		if err := s.idx.ApplyKey(r, rev); err != nil {
			return fmt.Errorf("corrupt: key %s: %w", k, err)
		}
		return nil
	})
}

// revision is the index revision of the state tx reads (or writes): its
// transaction id, which grows with every commit.
func revision(tx *bbolt.Tx) int64 { return int64(tx.ID()) }

// LookupKey answers from memory.
func (s *Store) LookupKey(_ context.Context, h authz.KeyHash) (authz.IndexedKey, bool, error) {
	if err := s.Ready(); err != nil {
		return authz.IndexedKey{}, false, err
	}
	c, ok := s.idx.Lookup(h)
	return c, ok, nil
}

// MarkUsed records the use in memory; it is written by the next flush. A
// time less than a second newer than the recorded one is ignored.
func (s *Store) MarkUsed(h authz.KeyHash, t time.Time) { s.idx.MarkUsed(h, t) }

// Stats returns the number of accounts and keys, from memory.
func (s *Store) Stats() Stats {
	accounts, keys := s.idx.Len()
	return Stats{Accounts: accounts, Keys: keys}
}

// Collectors returns the store's metrics: the accounts and keys it holds.
func (s *Store) Collectors() []prometheus.Collector { return s.idx.Collectors() }

// Ready returns nil unless the store is closed: a file is always ready.
func (s *Store) Ready() error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// FlushLastUsed writes the last-used times recorded since the last flush,
// in one transaction. On failure the times stay queued for the next flush.
func (s *Store) FlushLastUsed(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	used := s.idx.TakeUsed()
	if len(used) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		keys := tx.Bucket(bucketKeys)
		for _, u := range used {
			r, err := getKey(keys, u.KeyID)
			if err != nil {
				return err
			}
			if u.Time > r.LastUsedTime {
				r.LastUsedTime = u.Time
				if err := put(keys, []byte(u.KeyID), r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.idx.Requeue(used)
		return fmt.Errorf("flush last-used times: %w", dbError(err))
	}
	return nil
}

func (s *Store) flushEvery(d time.Duration) {
	defer close(s.flushDone)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failed flush keeps its times queued for the next one.
			if err := s.FlushLastUsed(context.Background()); err != nil {
				s.log.Warn("cannot write last-used times; retrying at the next flush", "err", err)
			}
			_ = s.db.View(func(tx *bbolt.Tx) error {
				releasePages(s.db, tx.Size())
				return nil
			})
		}
	}
}

// Close stops the background flush, writes pending last-used times and
// closes the database. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.flushDone
		flushErr := s.FlushLastUsed(context.Background())
		s.closed.Store(true)
		s.closeErr = errors.Join(flushErr, s.db.Close())
	})
	return s.closeErr
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(tx *bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return dbError(s.db.View(fn))
}

// dbError passes *authz.Error through and wraps anything else.
func dbError(err error) error {
	var e *authz.Error
	switch {
	case err == nil || errors.As(err, &e):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return errClosed
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return errDiskFull
	}
	return fmt.Errorf("bolt store: %w", err)
}
