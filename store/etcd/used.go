package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/store/keyindex"
)

// usedPerTxn is how many last-used times one transaction writes, within
// etcd's default limit of 128 operations; flushWorkers how many such
// transactions a flush has in flight.
const (
	usedPerTxn   = 100
	flushWorkers = 8
)

// FlushLastUsed writes the last-used times recorded since the last flush.
// Each is written only if it is newer than the stored one, so replicas
// never move a time back. On failure the times are tried again next time.
func (s *Store) FlushLastUsed(ctx context.Context) error {
	return s.call(ctx, s.flush)
}

// flush is FlushLastUsed without the closed check, for Close.
func (s *Store) flush(ctx context.Context) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	used := s.idx.TakeUsed()
	// Transactions of usedPerTxn times, flushWorkers at a time. Once one
	// fails (etcd is unreachable or refuses), the rest waits for the next
	// flush.
	sem := make(chan struct{}, flushWorkers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var unwritten []keyindex.Use
	for start := 0; start < len(used); start += usedPerTxn {
		chunk := used[start:min(start+usedPerTxn, len(used))]
		sem <- struct{}{}
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed {
			<-sem
			unwritten = append(unwritten, used[start:]...)
			break
		}
		ops := make([]clientv3.Op, len(chunk))
		for i, u := range chunk {
			ops[i] = raise(s.l.used(u.KeyID), encodeTime(u.Time))
		}
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
			_, err := s.cli.Txn(rctx).Then(ops...).Commit()
			cancel()
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				unwritten = append(unwritten, chunk...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.idx.Requeue(unwritten)
	if len(errs) > 0 {
		return fmt.Errorf("flush last-used times: %w", s.etcdError(ctx, errs[0]))
	}
	return nil
}

// raise is an operation that sets k to v unless k holds a value that
// sorts at or after v.
func raise(k, v string) clientv3.Op {
	put := []clientv3.Op{clientv3.OpPut(k, v)}
	older := clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(k), "<", v)}, put, nil)
	return clientv3.OpTxn([]clientv3.Cmp{notExists(k)}, put, []clientv3.Op{older})
}

func (s *Store) flushEvery(ctx context.Context) {
	defer s.done.Done()
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("cannot write last-used times; keeping them for the next flush", "err", err)
			}
		}
	}
}
