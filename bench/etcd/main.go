// Command etcd runs one etcd member, the real server embedded, for the load
// benchmark's keygate-etcd server: a single-member cluster on loopback with
// etcd's default settings (fsync included) and its data in -dir. It serves
// until SIGINT or SIGTERM.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("dir", "etcd.data", "data `dir`, created if missing")
	client := flag.String("client", "127.0.0.1:2379", "client `address` (http)")
	peer := flag.String("peer", "127.0.0.1:2380", "peer `address` (http)")
	flag.Parse()

	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = *dir
	clientURL, peerURL := url.URL{Scheme: "http", Host: *client}, url.URL{Scheme: "http", Host: *peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.LogLevel = "warn"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd ready on %s", clientURL.String())
	case err := <-e.Err():
		log.Fatal(err)
	case <-time.After(time.Minute):
		log.Fatal("etcd not ready after a minute")
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	select {
	case <-stop:
	case err := <-e.Err():
		log.Print(err)
	}
}
