// Package etcdtest runs real etcd clusters, embedded in the test process,
// for tests: every member on 127.0.0.1 with ports of its own and its data
// in a test's temporary directory. Members can be stopped and started again
// on the same ports and data, to test what a client does meanwhile.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a cluster may take to elect a leader.
const startTimeout = 30 * time.Second

// Cluster is an embedded etcd cluster. Its methods fail the test that
// started it on error.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	members []*member
}

type member struct {
	cfg  *embed.Config
	etcd *embed.Etcd // nil while stopped
}

// Start starts a cluster of n members and waits until it has a leader. It
// is stopped when t ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		peer, client := freeURL(t), freeURL(t)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.InitialClusterToken = fmt.Sprintf("keygate-test-%p", c)
		// Short heartbeats: a lost leader is replaced quickly.
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenMetricsUrls = nil
		c.members = append(c.members, &member{cfg: cfg})
		initial = append(initial, cfg.Name+"="+peer.String())
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	t.Cleanup(c.StopAll)
	c.start(c.all()...)
	return c
}

// freeURL returns a loopback URL with a port that was free a moment ago.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return url.URL{Scheme: "http", Host: l.Addr().String()}
}

func (c *Cluster) all() []int {
	is := make([]int, len(c.members))
	for i := range is {
		is[i] = i
	}
	return is
}

// start starts the given members, which are stopped, at once (a member
// of a cluster does not get ready alone), and waits until they are ready.
func (c *Cluster) start(is ...int) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range is {
		m := c.members[i]
		e, err := embed.StartEtcd(m.cfg)
		if err != nil {
			c.t.Fatalf("start etcd member %s: %v", m.cfg.Name, err)
		}
		m.etcd = e
		// Later starts find the data directory and join as they left.
		m.cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	for _, i := range is {
		m := c.members[i]
		select {
		case <-m.etcd.Server.ReadyNotify():
		case err := <-m.etcd.Err():
			c.t.Fatalf("etcd member %s: %v", m.cfg.Name, err)
		case <-time.After(startTimeout):
			c.t.Fatalf("etcd member %s not ready after %s", m.cfg.Name, startTimeout)
		}
	}
}

// Endpoints returns the client URLs of every member, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.cfg.AdvertiseClientUrls[0].String())
	}
	return eps
}

// Client returns a client of every member, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(ClientConfig(c.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// ClientConfig is a client configuration for tests: quiet, and quick to
// notice a lost member.
func ClientConfig(endpoints []string) clientv3.Config {
	return clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
	}
}

// Stop stops member i.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.members[i]; m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// Restart starts member i, which was stopped, and waits until it is ready.
func (c *Cluster) Restart(i int) { c.start(i) }

// StopAll stops every member.
func (c *Cluster) StopAll() {
	for i := range c.members {
		c.Stop(i)
	}
}

// RestartAll starts every member, all stopped, and waits until they are
// ready.
func (c *Cluster) RestartAll() { c.start(c.all()...) }
