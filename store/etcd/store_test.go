package etcd

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/etcd/etcdtest"
	"github.com/keygate/keygate/store/storetest"
)

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var n atomic.Int64
	cli := c.Client(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) authz.Store {
		prefix := fmt.Sprintf("/conformance/%d/", n.Add(1))
		t.Cleanup(func() { // after the store's Close
			if err := Verify(context.Background(), cli, prefix); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
		return openTest(t, c, prefix, Options{Now: now})
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
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestHotPathAllocs(t *testing.T) {
	storetest.HotPathAllocs(t, openTest(t, etcdtest.Start(t, 1), "/keygate/", Options{FlushInterval: time.Hour}))
}
