package etcd

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/store/etcd/etcdtest"
	"github.com/keygate/keygate/store/storetest"
)

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
		return openTest(t, c, fmt.Sprintf("/conformance/%d/", n.Add(1)), Options{Now: now})
	})
}

// openTest opens a store on a new client of c, closed when tb ends.
func openTest(tb testing.TB, c *etcdtest.Cluster, prefix string, opts Options) *Store {
	tb.Helper()
	cli, err := clientv3.New(etcdtest.ClientConfig(c.Endpoints()))
	if err != nil {
		tb.Fatal(err)
	}
	s, err := Open(tb.Context(), cli, prefix, opts)
	if err != nil {
		cli.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Verify(context.Background()); err != nil {
			tb.Errorf("Verify: %v", err)
		}
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestHotPathAllocs(t *testing.T) {
	storetest.HotPathAllocs(t, openTest(t, etcdtest.Start(t, 1), "/keygate/", Options{FlushInterval: time.Hour}))
}
