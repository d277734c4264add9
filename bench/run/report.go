package main

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"maps"
	"os"
	"slices"
	"strings"
)

// Markers of the generated part of the markdown file.
const (
	beginMarker = "<!-- bench/run: results begin -->"
	endMarker   = "<!-- bench/run: results end -->"
)

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + bytes.Count(b[:min(len(b), 9)], []byte("processor"))
}

// baseline returns the do-nothing server's row measured with r's keys and
// in-flight count, if any.
func baseline(rep report, r row) (row, bool) {
	for _, b := range rep.Rows {
		if b.Server == nopServer && b.Keys == r.Keys && b.InFlight == r.InFlight {
			return b, true
		}
	}
	return row{}, false
}

func ratio(v, base float64) string {
	if base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// table is the results as a markdown table, ratios to the do-nothing server.
func table(rep report) string {
	var b strings.Builder
	b.WriteString("| keys | in flight | server | Checks/s | ×nop | p50 µs | p90 µs | p99 µs | p99 ×nop | server CPU µs/Check | ×nop | RSS MiB | start-up s | others' CPU (cores) |\n")
	b.WriteString("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Rows {
		base, _ := baseline(rep, r)
		fmt.Fprintf(&b, "| %d | %d | %s | %.0f | %s | %.0f | %.0f | %.0f | %s | %.1f | **%s** | %.0f | %.2f | %.2f |\n",
			r.Keys, r.InFlight, r.Server, r.PerSecond, ratio(r.PerSecond, base.PerSecond),
			r.P50, r.P90, r.P99, ratio(r.P99, base.P99), r.ServerCPU, ratio(r.ServerCPU, base.ServerCPU),
			mib(r.RSS), r.StartupSeconds, r.OtherCores)
	}
	return b.String()
}

// writeMarkdown replaces the generated part of path (or appends one).
func writeMarkdown(path string, rep report) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	fmt.Fprintf(&b, "Measured %s on %s. Each server was measured %d times, in turn with the others (warm-up %s, window %s); each figure is the median, RSS the largest. Ratios are to the do-nothing server.\n\n```sh\n%s\n```\n\n",
		rep.Date.Format("2006-01-02 15:04 MST"), rep.Machine, rep.Rounds, rep.Warmup, rep.Window, rep.Command)
	b.WriteString(table(rep))
	if len(rep.ImportRates) > 0 {
		b.WriteString("\nLoading the keys with `keygate import` (SHA-256 hashes, ten keys an account, on CPU 0):\n\n")
		for _, r := range rep.Rows {
			if s, ok := rep.ImportRates[r.Keys]; ok {
				fmt.Fprintf(&b, "- %d keys: %s\n", r.Keys, s)
				delete(rep.ImportRates, r.Keys)
			}
		}
	}
	if len(rep.EtcdLoads) > 0 {
		b.WriteString("\nCopying them into keygate-etcd's etcd member with `keygate migrate` (on CPU 0, etcd on CPU 1):\n\n")
		for _, n := range slices.Sorted(maps.Keys(rep.EtcdLoads)) {
			fmt.Fprintf(&b, "- %d keys: %s\n", n, rep.EtcdLoads[n])
		}
	}
	if len(rep.Writes) > 0 {
		b.WriteString("\nWrites through the admin API (JSON over HTTP) from 32 clients at once, each acknowledged once it is on disk:\n\n")
		b.WriteString("| write | writes/s | p50 ms | p99 ms | server CPU µs/write |\n|---|---:|---:|---:|---:|\n")
		for _, w := range rep.Writes {
			fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.1f | %.0f |\n", w.Op, w.PerSecond, w.P50, w.P99, w.ServerCPU)
		}
	}
	b.WriteString("\n" + endMarker)
	text := string(old)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i < 0 || j < i {
		text += "\n" + b.String() + "\n"
	} else {
		text = text[:i] + b.String() + text[j+len(endMarker):]
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// Colours of the servers in the chart.
var colours = map[string]string{nopServer: "#9e9e9e", keygateServer: "#1f77b4", keygateEtcdServer: "#2ca02c", opaServer: "#ff7f0e"}

// chart draws two bar panels, server CPU per Check and Checks/s, each as a
// ratio to the do-nothing server, grouped by keys and in-flight count.
func chart(rep report) string {
	type group struct{ keys, inflight int }
	var groups []group
	var servers []string
	seen := map[group]bool{}
	seenServer := map[string]bool{}
	for _, r := range rep.Rows {
		g := group{r.Keys, r.InFlight}
		if !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
		if !seenServer[r.Server] {
			seenServer[r.Server] = true
			servers = append(servers, r.Server)
		}
	}
	value := func(g group, server string, f func(row) float64) (float64, bool) {
		for _, r := range rep.Rows {
			if r.Keys == g.keys && r.InFlight == g.inflight && r.Server == server {
				base, ok := baseline(rep, r)
				if !ok || f(base) == 0 {
					return 0, false
				}
				return f(r) / f(base), true
			}
		}
		return 0, false
	}

	const panelW, panelH, top, left, gap = 460, 260, 60, 50, 40
	width := left + 2*(panelW+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, top+panelH+70)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">keygate vs OPA-Envoy, relative to a do-nothing grpc-go ext_authz server (1.0, dashed); one server core</text>`+"\n", left)
	panels := []struct {
		title string
		f     func(row) float64
	}{
		{"server CPU per Check (lower is better)", func(r row) float64 { return r.ServerCPU }},
		{"Checks/s (higher is better)", func(r row) float64 { return r.PerSecond }},
	}
	for p, panel := range panels {
		x0 := left + p*(panelW+gap)
		maxV := 1.2
		for _, g := range groups {
			for _, s := range servers {
				if v, ok := value(g, s, panel.f); ok {
					maxV = max(maxV, v*1.1)
				}
			}
		}
		y := func(v float64) float64 { return float64(top+panelH) - v/maxV*panelH }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0, top-12, html.EscapeString(panel.title))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top+panelH, x0+panelW, top+panelH)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, top, x0, top+panelH)
		for _, tick := range ticks(maxV) {
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g×</text>`+"\n", x0-4, y(tick)+4, tick)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", x0+1, y(tick), x0+panelW, y(tick))
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black" stroke-dasharray="4 3"/>`+"\n", x0, y(1), x0+panelW, y(1))
		gw := float64(panelW) / float64(len(groups))
		bw := gw * 0.8 / float64(len(servers))
		for gi, g := range groups {
			gx := float64(x0) + float64(gi)*gw + gw*0.1
			for si, s := range servers {
				v, ok := value(g, s, panel.f)
				if !ok {
					continue
				}
				x := gx + float64(si)*bw
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s, %d keys, %d in flight: %.2f×</title></rect>`+"\n",
					x, y(v), bw-1, float64(top+panelH)-y(v), colours[s], s, g.keys, g.inflight, v)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9">%.2f</text>`+"\n", x+bw/2, y(v)-3, v)
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s keys</text>`+"\n", gx+gw*0.4, top+panelH+16, shortCount(g.keys))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d in flight</text>`+"\n", gx+gw*0.4, top+panelH+30, g.inflight)
		}
	}
	for i, s := range servers {
		x := left + i*160
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", x, top+panelH+48, colours[s], x+16, top+panelH+58, serverLabel(s))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func serverLabel(s string) string {
	if s == nopServer {
		return "do-nothing grpc-go"
	}
	return s
}

// ticks returns up to six round values from 0 to maxV.
func ticks(maxV float64) []float64 {
	step := 0.25
	for _, s := range []float64{0.25, 0.5, 1, 2, 5, 10, 20, 50} {
		step = s
		if maxV/s <= 6 {
			break
		}
	}
	var t []float64
	for v := 0.0; v <= maxV; v += step {
		t = append(t, v)
	}
	return t
}

func shortCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
