package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/keyindex"
	"github.com/keygate/keygate/store/record"
)

// errClosed is returned by every method of a closed Store.
var errClosed = authz.Errorf(authz.EUnavailable, "the store is closed")

// Options configures a Store. The zero value is ready to use.
type Options struct {
	Now func() time.Time // clock for record times; nil = time.Now
	// MaxStaleness is how long the replica may go without confirming that
	// it has every change before LookupKey fails with EUnavailable; 0 = 30s.
	MaxStaleness time.Duration
	// FlushInterval is how often last-used times are written; 0 = 10s.
	FlushInterval time.Duration
	// RequestTimeout bounds each call to etcd, and a whole write with its
	// retries; 0 = 5s.
	RequestTimeout time.Duration
	Logger         *slog.Logger // nil = discard
}

// Stats describes a Store's memory and how far behind etcd it may be.
type Stats struct {
	Accounts, Keys int
	Revision       int64         // the etcd revision the memory is known to hold
	Lag            time.Duration // time since the memory was last known to hold every change
	Resyncs        int64         // snapshots loaded since Open, the first one included
}

// Store is an authz.Store on an etcd cluster, with every account and key
// held in memory. It is safe for concurrent use.
type Store struct {
	cli  *clientv3.Client
	l    layout
	opts Options
	log  *slog.Logger
	idx  *keyindex.Index

	// Freshness: times are durations since start (monotonic clock).
	start    time.Time
	synced   atomic.Int64  // when the memory last held every change
	syncedCh chan struct{} // receives (buffered, once) after synced moves
	asked    atomic.Int64  // when the oldest unanswered progress request was sent; 0 if none
	stale    atomic.Bool   // synced is older than MaxStaleness
	rev      atomic.Int64
	resyncs  atomic.Int64
	watchCtx atomic.Pointer[context.Context] // the context of the current watch

	accountLocks [64]sync.Mutex // serialize this replica's changes of one account
	flushMu      sync.Mutex

	closed    atomic.Bool
	cancel    context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var _ authz.Store = (*Store)(nil)

// Open loads a snapshot of the keygate records under prefix from etcd and
// starts following their changes. It takes ownership of cli (best made
// with ReconnectOptions among its DialOptions): Close closes it. prefix
// is used as given, with a "/" added if it lacks one. ctx bounds the first
// load only.
//
// Open writes the schema version into an empty prefix, and refuses a
// prefix that holds other data or a newer schema.
func Open(ctx context.Context, cli *clientv3.Client, prefix string, opts Options) (*Store, error) {
	prefix = withSlash(prefix)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxStaleness <= 0 {
		opts.MaxStaleness = 30 * time.Second
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 10 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cli: cli, l: layout(prefix), opts: opts, log: log.With("etcd_prefix", prefix), idx: keyindex.New(), start: time.Now(), syncedCh: make(chan struct{}, 1)}
	if err := s.checkSchema(ctx); err != nil {
		return nil, fmt.Errorf("etcd prefix %s: %w", prefix, err)
	}
	rev, err := s.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("etcd prefix %s: load: %w", prefix, err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done.Add(3)
	go s.follow(bg, rev)
	go s.heartbeat(bg)
	go s.flushEvery(bg)
	// A load that took long leaves the memory proven complete only as of
	// its start: wait for the watch to prove it current (a heartbeat or
	// two) rather than return a store about to turn stale.
	loaded, timeout := s.now(), time.NewTimer(s.opts.RequestTimeout)
	defer timeout.Stop()
	for loaded-s.synced.Load() > int64(s.opts.MaxStaleness/2) {
		select {
		case <-s.syncedCh:
		case <-timeout.C:
			return s, nil
		}
	}
	return s, nil
}

// checkSchema checks the schema version, or writes it into an empty
// prefix. Only an empty prefix is compared as a whole: the compare reads
// every key of the range.
func (s *Store) checkSchema(outer context.Context) error {
	ctx, cancel := context.WithTimeout(outer, s.opts.RequestTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.l.schema())
	if err != nil {
		return s.etcdError(outer, err)
	}
	if len(resp.Kvs) == 0 {
		empty := clientv3.Compare(clientv3.CreateRevision(string(s.l)), "=", 0).WithPrefix()
		tresp, err := s.cli.Txn(ctx).If(empty).Then(clientv3.OpPut(s.l.schema(), schemaVersion)).Else(clientv3.OpGet(s.l.schema())).Commit()
		switch {
		case err != nil:
			return s.etcdError(outer, err)
		case tresp.Succeeded:
			return nil
		}
		if resp = (*clientv3.GetResponse)(tresp.Responses[0].GetResponseRange()); len(resp.Kvs) == 0 {
			return fmt.Errorf("it holds data but no %q key: not a keygate prefix, or a migration into it is unfinished", schemaKey)
		}
	}
	if v := string(resp.Kvs[0].Value); v != schemaVersion {
		return fmt.Errorf("schema version %q is not the one this keygate supports (%s): upgrade keygate", v, schemaVersion)
	}
	return nil
}

// now is the time since start on the monotonic clock, as freshness uses it.
func (s *Store) now() int64 { return int64(time.Since(s.start)) }

// load reads every watched record at one revision, in pages, and merges it
// into memory; keys the snapshot lacks are forgotten. It returns the
// revision. Checks go on answering from memory meanwhile.
func (s *Store) load(ctx context.Context) (int64, error) {
	started := s.now()
	gen := s.idx.StartSnapshot()

	apply := func(kv *mvccpb.KeyValue) error {
		s.apply(kv)
		return nil
	}
	// The accounts, then each shard of keys, all at the revision of the
	// first read.
	rev, err := readAll(ctx, s.cli, s.l.accounts(), 0, s.opts.RequestTimeout, apply)
	for i := 0; i < keyShards && err == nil; i++ {
		_, err = readAll(ctx, s.cli, s.l.keyShard(fmt.Sprintf("%02x", i)), rev, s.opts.RequestTimeout, apply)
	}
	if err != nil {
		return 0, s.etcdError(ctx, err)
	}
	s.idx.Sweep(gen, rev)
	s.rev.Store(rev)
	s.resyncs.Add(1)
	s.markSynced(started)
	return rev, nil
}

// apply applies records read from or written to etcd, in the index's
// revision order (see keyindex). Records that are not watched are ignored;
// one that cannot be used (it does not decode, its ids or hash are
// malformed, or its hash belongs to another key) is logged and skipped.
func (s *Store) apply(kvs ...*mvccpb.KeyValue) {
	for _, kv := range kvs {
		dir, id, ok := s.l.watchedID(string(kv.Key))
		if !ok {
			continue
		}
		var err error
		switch dir {
		case accountDir:
			var r *storagev1.AccountRecord
			if r, err = record.Decode[storagev1.AccountRecord](kv.Value); err == nil {
				err = s.idx.ApplyAccount(r, kv.ModRevision)
			}
		case keyDir:
			var r *storagev1.KeyRecord
			if r, err = record.Decode[storagev1.KeyRecord](kv.Value); err == nil {
				err = s.idx.ApplyKey(r, kv.ModRevision)
			}
		}
		if err != nil {
			s.log.Error("ignoring a record that cannot be used", "key", string(kv.Key), "id", id, "err", err)
		}
	}
}

// written builds the KeyValue of a record that a transaction committed at
// rev, for apply.
func written(key string, value []byte, rev int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: value, ModRevision: rev}
}

// follow watches the watched records from the revision after rev, applying
// each change; it resumes the watch when it is cut, and loads a new
// snapshot when the revision it needs has been compacted.
func (s *Store) follow(ctx context.Context, rev int64) {
	defer s.done.Done()
	for ctx.Err() == nil {
		if rev == 0 {
			var err error
			if rev, err = s.load(ctx); err != nil {
				s.log.Warn("cannot load a snapshot from etcd; retrying", "err", err)
				sleep(ctx, time.Second)
				continue
			}
			s.log.Info("resynchronised from a snapshot", "revision", rev)
		}
		rev = s.watch(ctx, rev)
	}
}

// watch follows changes from rev until the watch ends, and returns the
// revision to resume from, or 0 when a new snapshot is needed.
//
// The watch starts at rev itself, whose changes memory holds already
// (applying them again changes nothing): etcd answers progress requests
// only for watches that start at or before its current revision, and on an
// idle cluster rev+1 is in the future. For the same reason the watch is
// started anew when progress requests go unanswered for three heartbeats:
// the client library resumes a cut watch after the last revision it saw.
func (s *Store) watch(ctx context.Context, rev int64) int64 {
	// RequireLeader makes a member that has lost its cluster cut the watch
	// instead of holding it open with nothing to say.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	s.watchCtx.Store(&wctx)
	wch := s.cli.Watch(wctx, s.l.watched(), clientv3.WithPrefix(), clientv3.WithRev(rev))
	hb := s.heartbeatInterval()
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-t.C:
			if asked := s.asked.Load(); asked != 0 && s.now()-asked > 3*int64(hb) {
				return rev
			}
			continue
		}
		switch {
		case !ok:
			if ctx.Err() == nil {
				sleep(ctx, 100*time.Millisecond) // a watch that ends at once must not spin
			}
			return rev
		case resp.CompactRevision != 0:
			s.log.Warn("the etcd history this replica needs was compacted; loading a new snapshot",
				"revision", rev, "compacted", resp.CompactRevision)
			return 0
		case resp.Err() != nil:
			s.log.Warn("etcd watch cut; resuming", "revision", rev, "err", resp.Err())
			return rev
		case resp.IsProgressNotify():
			rev = max(rev, resp.Header.Revision)
			if asked := s.asked.Swap(0); asked != 0 {
				s.markSynced(asked)
			}
		default:
			// Deleted keys are removed a run of deletions at a time (a
			// removal reads the whole index), in order with the other changes.
			var removed map[string]int64
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypeDelete {
					s.idx.Remove(removed)
					removed = nil
					s.apply(ev.Kv)
				} else if dir, id, ok := s.l.watchedID(string(ev.Kv.Key)); ok && dir == keyDir {
					if removed == nil {
						removed = make(map[string]int64)
					}
					removed[id] = ev.Kv.ModRevision
				}
			}
			s.idx.Remove(removed)
			rev = max(rev, resp.Events[len(resp.Events)-1].Kv.ModRevision)
		}
		s.rev.Store(rev)
	}
}

// heartbeatInterval is how often a replica asks etcd to confirm that its
// watch is up to date, and checks its staleness.
func (s *Store) heartbeatInterval() time.Duration {
	return min(max(s.opts.MaxStaleness/10, 10*time.Millisecond), time.Second)
}

// heartbeat asks etcd, through the watch, for a progress notification
// every heartbeatInterval; each answer proves that the replica held every
// change at the time its request was sent. It marks the store stale when
// no proof is younger than MaxStaleness.
func (s *Store) heartbeat(ctx context.Context) {
	defer s.done.Done()
	d := s.heartbeatInterval()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if wctx := s.watchCtx.Load(); wctx != nil {
			s.asked.CompareAndSwap(0, s.now())
			rctx, cancel := context.WithTimeout(*wctx, d)
			_ = s.cli.RequestProgress(rctx) // unanswered, the lag grows
			cancel()
		}
		if lag := s.now() - s.synced.Load(); lag > int64(s.opts.MaxStaleness) && !s.stale.Swap(true) {
			s.log.Error("lost etcd: checks now fail until the replica catches up",
				"lag", time.Duration(lag).Round(time.Millisecond), "max_staleness", s.opts.MaxStaleness)
		}
	}
}

// markSynced records that the memory held every change at t.
func (s *Store) markSynced(t int64) {
	for {
		old := s.synced.Load()
		if t <= old {
			break
		}
		if s.synced.CompareAndSwap(old, t) {
			select {
			case s.syncedCh <- struct{}{}:
			default: // a wake-up is pending already
			}
			break
		}
	}
	if s.now()-s.synced.Load() <= int64(s.opts.MaxStaleness) && s.stale.Swap(false) {
		s.log.Info("caught up with etcd: checks are answered again")
	}
}

// Ready returns nil when the replica is known to hold every change made
// less than MaxStaleness ago, else an EUnavailable error.
func (s *Store) Ready() error {
	switch {
	case s.closed.Load():
		return errClosed
	case s.stale.Load():
		return authz.Errorf(authz.EUnavailable, "lost etcd %s ago (max staleness %s)",
			s.Stats().Lag.Round(time.Millisecond), s.opts.MaxStaleness)
	}
	return nil
}

// Collectors returns the store's metrics: the accounts and keys it holds,
// and how fresh its memory is.
func (s *Store) Collectors() []prometheus.Collector {
	return append(s.idx.Collectors(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_lag_seconds",
			Help: "Time since this replica last confirmed that it holds every change in etcd; checks fail past --max-staleness.",
		}, func() float64 { return s.Stats().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_revision", Help: "The etcd revision this replica holds.",
		}, func() float64 { return float64(s.Stats().Revision) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_store_snapshots_total", Help: "Snapshots loaded from etcd: one at start, one per resynchronisation.",
		}, func() float64 { return float64(s.Stats().Resyncs) }),
	)
}

// Stats returns the size of the memory and its freshness.
func (s *Store) Stats() Stats {
	accounts, keys := s.idx.Len()
	return Stats{
		Accounts: accounts,
		Keys:     keys,
		Revision: s.rev.Load(),
		Lag:      time.Duration(s.now() - s.synced.Load()),
		Resyncs:  s.resyncs.Load(),
	}
}

// LookupKey answers from memory. It fails with EUnavailable when the
// replica has been out of touch with etcd for longer than MaxStaleness.
func (s *Store) LookupKey(_ context.Context, h authz.KeyHash) (authz.IndexedKey, bool, error) {
	if s.stale.Load() || s.closed.Load() {
		if err := s.Ready(); err != nil { // else it caught up meanwhile
			return authz.IndexedKey{}, false, err
		}
	}
	c, ok := s.idx.Lookup(h)
	return c, ok, nil
}

// MarkUsed records the use in memory; a background flush writes it to etcd.
// A time less than a second newer than the recorded one is ignored.
func (s *Store) MarkUsed(h authz.KeyHash, t time.Time) { s.idx.MarkUsed(h, t) }

// Close stops following etcd, writes pending last-used times (giving up
// once a write fails) and closes the client. Later calls
// return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.done.Wait()
		flushErr := s.flush(context.Background()) // each transaction has RequestTimeout
		s.closed.Store(true)
		s.closeErr = errors.Join(flushErr, s.cli.Close())
	})
	return s.closeErr
}

// call runs fn with a context bounded by RequestTimeout and maps its error.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context) error) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	return s.etcdError(ctx, fn(rctx))
}

// etcdError passes *authz.Error and the caller's own context errors
// through, makes EUnavailable of the errors that say etcd cannot serve now
// (no quorum, timeouts, space quota), and wraps anything else.
func (s *Store) etcdError(ctx context.Context, err error) error {
	var e *authz.Error
	switch {
	case err == nil || errors.As(err, &e):
		return err
	case ctx.Err() != nil:
		return ctx.Err()
	case s.closed.Load():
		return errClosed
	}
	switch status.Code(rpctypes.Error(err)) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return authz.Errorf(authz.EUnavailable, "etcd cannot serve now: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return authz.Errorf(authz.EUnavailable, "etcd did not answer within %s", s.opts.RequestTimeout)
	}
	return fmt.Errorf("etcd store: %w", err)
}

// maxAttempts bounds the compare-and-retry loop of a write.
const maxAttempts = 100

// retry runs try until it reports done, retrying while another writer got
// in first (a failed compare), with a short random pause between attempts.
func (s *Store) retry(ctx context.Context, try func(ctx context.Context) (done bool, err error)) error {
	return s.call(ctx, func(ctx context.Context) error {
		for attempt := range maxAttempts {
			done, err := try(ctx)
			if done || err != nil {
				return err
			}
			sleep(ctx, jitter(attempt))
		}
		return authz.Errorf(authz.EUnavailable, "gave up after %d attempts: the record changes too often", maxAttempts)
	})
}

// jitter is the pause before the attempt after attempt: random, up to a
// millisecond doubled with each attempt, at most 32ms.
func jitter(attempt int) time.Duration {
	return time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5)))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
