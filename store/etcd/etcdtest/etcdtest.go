// Package etcdtest runs real etcd clusters, embedded in the test process,
// for tests: every member on 127.0.0.1 with ports of its own and its data
// in a test's temporary directory. Members can be stopped and started again
// on the same ports and data, to test what a client does meanwhile.
//
// Clients reach each member through a loopback TCP relay that Stop cuts
// first, resetting every connection at once as a crashed process would;
// an embedded member that is closed politely instead waits seconds for its
// clients' watch streams to end.
package etcdtest

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// startTimeout bounds how long a cluster may take to elect a leader.
const startTimeout = 30 * time.Second

// Cluster is an embedded etcd cluster. Its methods fail the test that
// started it on error.
type Cluster struct {
	t        testing.TB
	mu       sync.Mutex
	members  []*member
	stopping sync.WaitGroup // members that StopAll is closing
}

type member struct {
	cfg   *embed.Config
	etcd  *embed.Etcd // nil while stopped
	relay *relay      // what clients connect to
}

// Start starts a cluster of n members and waits until it has a leader. It
// is stopped when t ends. Each option may change each member's
// configuration before it starts: clients use https when it sets
// ClientTLSInfo.
func Start(t testing.TB, n int, options ...func(*embed.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		peer, client := freeURL(t), freeURL(t)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
		cfg.AdvertiseClientUrls = []url.URL{client}
		cfg.InitialClusterToken = fmt.Sprintf("keygate-test-%p", c)
		// Short heartbeats: a lost leader is replaced quickly.
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.ListenMetricsUrls = nil
		for _, o := range options {
			o(cfg)
		}
		if !cfg.ClientTLSInfo.Empty() {
			cfg.ListenClientUrls[0].Scheme, cfg.AdvertiseClientUrls[0].Scheme = "https", "https"
		}
		c.members = append(c.members, &member{cfg: cfg, relay: &relay{addr: client.Host}})
		initial = append(initial, cfg.Name+"="+peer.String())
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	t.Cleanup(func() {
		c.StopAll()
		c.stopping.Wait()
	})
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
	c.stopping.Wait()
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
		if err := m.relay.open(e.Clients[0].Addr().String()); err != nil {
			c.t.Fatalf("etcd member %s: relay: %v", m.cfg.Name, err)
		}
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

// ClientConfig is a client configuration for tests: quiet, quick to notice
// a lost member and to reconnect to one that is back.
func ClientConfig(endpoints []string) clientv3.Config {
	return clientv3.Config{
		DialOptions:          []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}, MinConnectTimeout: time.Second})},
		Endpoints:            endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
		Logger:               zap.NewNop(),
	}
}

// Stop stops member i: its clients lose their connections at once.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.members[i]
	e := m.etcd
	m.etcd = nil
	c.mu.Unlock()
	m.relay.cut()
	if e != nil {
		e.Close()
	}
}

// Restart starts member i, which was stopped, and waits until it is ready.
func (c *Cluster) Restart(i int) { c.start(i) }

// StopAll stops every member, all at once: it cuts their clients off and
// returns, then stops their raft loops (so that no leader waits to hand
// over to a member that is stopping too) and closes them in the
// background. Restarts, and the end of the test, wait for that.
func (c *Cluster) StopAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var es []*embed.Etcd
	for _, m := range c.members {
		m.relay.cut()
		if m.etcd != nil {
			es = append(es, m.etcd)
			m.etcd = nil
		}
	}
	c.stopping.Go(func() {
		var wg sync.WaitGroup
		for _, e := range es {
			wg.Go(e.Server.HardStop)
		}
		wg.Wait()
		for _, e := range es {
			wg.Go(e.Close)
		}
		wg.Wait()
	})
}

// RestartAll starts every member, all stopped, and waits until they are
// ready.
func (c *Cluster) RestartAll() { c.start(c.all()...) }

// relay forwards the connections made to addr to a member.
type relay struct {
	addr  string
	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool
}

// open listens on addr and forwards to target.
func (r *relay) open(target string) error {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.l, r.conns = l, make(map[net.Conn]bool)
	r.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go r.forward(c, target)
		}
	}()
	return nil
}

func (r *relay) forward(c net.Conn, target string) {
	up, err := net.Dial("tcp", target)
	if err != nil || !r.track(c, up) {
		c.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	done := make(chan struct{}, 2)
	for _, p := range [][2]net.Conn{{c, up}, {up, c}} {
		go func() {
			_, _ = io.Copy(p[0], p[1]) // ends when either side closes
			done <- struct{}{}
		}()
	}
	<-done
	c.Close()
	up.Close()
	<-done
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, up)
	r.mu.Unlock()
}

// track records conns, unless the relay has been cut.
func (r *relay) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	for _, c := range conns {
		r.conns[c] = true
	}
	return true
}

// cut stops listening and closes every connection.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil {
		r.l.Close()
	}
	for c := range r.conns {
		c.Close()
	}
	r.l, r.conns = nil, nil
}
