package keyindex

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns gauges of the accounts and keys the index holds,
// keygate_store_accounts and keygate_store_keys.
func (x *Index) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_accounts", Help: "Accounts in the store.",
		}, func() float64 { a, _ := x.Len(); return float64(a) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_keys", Help: "Keys in the store, of every state.",
		}, func() float64 { _, k := x.Len(); return float64(k) }),
	}
}
