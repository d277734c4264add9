// Package kubernetes holds manifests that run keygate replicas on etcd, and
// the test that checks the fields keygate relies on: the flags are real
// flags of "keygate serve", the container's command line runs against a
// real etcd and passes its probes, and the Services and the
// PodDisruptionBudget select the Deployment's pods.
package kubernetes

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"sigs.k8s.io/yaml"

	"github.com/keygate/keygate/store/etcd/etcdtest"
)

// The parts of the Kubernetes objects the test reads.
type (
	object struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec spec `json:"spec"`
	}
	spec struct {
		Replicas     int             `json:"replicas"`
		Selector     fields          `json:"selector"`
		MinAvailable int             `json:"minAvailable"`
		Ports        []servicePort   `json:"ports"`
		Template     podTemplateSpec `json:"template"`
	}
	fields          = map[string]any
	podTemplateSpec struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds int         `json:"terminationGracePeriodSeconds"`
			Containers                    []container `json:"containers"`
		} `json:"spec"`
	}
	container struct {
		Args  []string `json:"args"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		Env []struct {
			Name      string `json:"name"`
			ValueFrom struct {
				SecretKeyRef *struct {
					Name string `json:"name"`
					Key  string `json:"key"`
				} `json:"secretKeyRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		StartupProbe   probe `json:"startupProbe"`
		ReadinessProbe probe `json:"readinessProbe"`
		LivenessProbe  probe `json:"livenessProbe"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"`
		} `json:"httpGet"`
		GRPC *struct {
			Port    int    `json:"port"`
			Service string `json:"service"`
		} `json:"grpc"`
	}
	servicePort struct {
		Port       int    `json:"port"`
		TargetPort any    `json:"targetPort"`
		Protocol   string `json:"appProtocol"`
	}
)

func load(t *testing.T, path string) map[string]object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]object{}
	for i, doc := range bytes.Split(b, []byte("\n---\n")) {
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	return objs
}

// keygate builds the keygate binary into a temporary directory.
func keygate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keygate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/keygate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveFlags returns the flags "keygate serve --help" lists.
func serveFlags(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("keygate serve --help: %v\n%s", err, out)
	}
	return string(out)
}

func TestManifests(t *testing.T) {
	objs := load(t, "keygate.yaml")
	dep, ok := objs["Deployment/keygate"]
	if !ok {
		t.Fatalf("no Deployment/keygate among %v", slices.Collect(maps.Keys(objs)))
	}
	pod := dep.Spec.Template
	labels := pod.Metadata.Labels
	if !selects(dep.Spec.Selector, labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", dep.Spec.Selector, labels)
	}
	if dep.Spec.Replicas < 3 {
		t.Errorf("%d replicas; want at least 3, so that a drain and a crash leave one", dep.Spec.Replicas)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// Every flag is a flag of keygate serve; the store is etcd.
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("args %q do not run keygate serve", c.Args)
	}
	bin := keygate(t)
	help := serveFlags(t, bin)
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		flags[name] = value
		if !strings.Contains(help, "  --"+name+" ") && !strings.Contains(help, "  --"+name+"\n") {
			t.Errorf("%s is not a flag of keygate serve", a)
		}
	}
	if flags["store"] != "etcd" || flags["etcd-endpoints"] == "" {
		t.Errorf("flags %v: want --store=etcd and --etcd-endpoints", flags)
	}
	if d, err := time.ParseDuration(flags["shutdown-timeout"]); err != nil || d >= time.Duration(pod.Spec.TerminationGracePeriodSeconds)*time.Second {
		t.Errorf("--shutdown-timeout %q must be below terminationGracePeriodSeconds %d", flags["shutdown-timeout"], pod.Spec.TerminationGracePeriodSeconds)
	}

	// The container ports are the ones keygate listens on, on every
	// interface (the kubelet probes the pod's address).
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, flag := range map[string]string{"grpc": "grpc-addr", "admin": "admin-addr"} {
		host, port, err := net.SplitHostPort(flags[flag])
		if err != nil || port != strconv.Itoa(ports[name]) || host != "" && host != "0.0.0.0" {
			t.Errorf("--%s=%q does not listen on every interface on port %s (%d)", flag, flags[flag], name, ports[name])
		}
	}

	// keygate serve refuses an admin API beyond loopback without TLS unless
	// told that the network is trusted. (The Serve test below binds
	// loopback only, so it cannot see that refusal.)
	if _, insecure := flags["allow-insecure-admin"]; !insecure && flags["tls-cert"] == "" {
		t.Error("the admin API listens beyond loopback: keygate serve needs --tls-cert or --allow-insecure-admin")
	}

	// The admin token comes from a Secret: replicas on etcd share one.
	var token bool
	for _, e := range c.Env {
		token = token || e.Name == "KEYGATE_ADMIN_TOKEN" && e.ValueFrom.SecretKeyRef != nil
	}
	if !token {
		t.Error("KEYGATE_ADMIN_TOKEN does not come from a Secret")
	}

	// Probes: started = the Check service's gRPC health; ready = /readyz;
	// alive = /healthz (losing etcd must not restart a replica).
	if g := c.StartupProbe.GRPC; g == nil || g.Port != ports["grpc"] || g.Service != "envoy.service.auth.v3.Authorization" {
		t.Errorf("startupProbe %+v: want gRPC health of envoy.service.auth.v3.Authorization on port %d", g, ports["grpc"])
	}
	for _, p := range []struct {
		name, path string
		probe      probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		if h := p.probe.HTTPGet; h == nil || h.Path != p.path || fmt.Sprint(h.Port) != "admin" {
			t.Errorf("%s %+v: want GET %s on the admin port", p.name, h, p.path)
		}
	}

	// The Services and the budget select the pods; the budget lets a
	// drain go on while keeping a majority.
	for _, name := range []string{"Service/keygate", "Service/keygate-admin", "PodDisruptionBudget/keygate"} {
		o, ok := objs[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		sel := o.Spec.Selector
		if ml, ok := sel["matchLabels"].(fields); ok {
			sel = ml
		}
		if !selects(fields{"matchLabels": sel}, labels) {
			t.Errorf("%s selects %v, not the pods %v", name, sel, labels)
		}
		for _, p := range o.Spec.Ports {
			if _, ok := ports[fmt.Sprint(p.TargetPort)]; !ok {
				t.Errorf("%s targets port %v, which the pods do not name", name, p.TargetPort)
			}
		}
	}
	if pdb := objs["PodDisruptionBudget/keygate"]; pdb.Spec.MinAvailable < 1 || pdb.Spec.MinAvailable >= dep.Spec.Replicas {
		t.Errorf("minAvailable %d: want at least 1 and fewer than the %d replicas", pdb.Spec.MinAvailable, dep.Spec.Replicas)
	}
	t.Run("Serve", func(t *testing.T) { serve(t, bin, c, ports) })
	if svc := objs["Service/keygate"]; len(svc.Spec.Ports) != 1 || fmt.Sprint(svc.Spec.Ports[0].TargetPort) != "grpc" || svc.Spec.Ports[0].Protocol != "grpc" {
		t.Errorf("Service/keygate ports %+v: want the grpc port, appProtocol grpc", svc.Spec.Ports)
	}
}

// selects reports whether a selector's matchLabels all hold in labels.
func selects(selector fields, labels map[string]string) bool {
	ml, _ := selector["matchLabels"].(fields)
	if len(ml) == 0 {
		return false
	}
	for k, v := range ml {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// serve runs the container's command line, with its etcd endpoints and
// ports replaced by a real etcd cluster and free loopback ports, and checks
// that the probes pass: the startup probe's gRPC health service, /readyz
// and /healthz.
func serve(t *testing.T, bin string, c container, ports map[string]int) {
	cluster := etcdtest.Start(t, 1)
	grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
	args := slices.Clone(c.Args)
	for i, a := range args {
		switch name, _, _ := strings.Cut(a, "="); name {
		case "--etcd-endpoints":
			args[i] = name + "=" + strings.Join(cluster.Endpoints(), ",")
		case "--grpc-addr":
			args[i] = name + "=" + grpcAddr
		case "--admin-addr":
			args[i] = name + "=" + adminAddr
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KEYGATE_ADMIN_TOKEN=manifest-test-token")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("keygate serve:\n%s", stderr.String())
		}
	}()

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for _, p := range []struct {
		what string
		ok   func() bool
	}{
		{"startupProbe", func() bool {
			resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: c.StartupProbe.GRPC.Service})
			return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
		}},
		{"readinessProbe", func() bool { return get(adminAddr, c.ReadinessProbe.HTTPGet.Path) == http.StatusOK }},
		{"livenessProbe", func() bool { return get(adminAddr, c.LivenessProbe.HTTPGet.Path) == http.StatusOK }},
	} {
		deadline := time.Now().Add(20 * time.Second)
		for !p.ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s does not pass within 20s", p.what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// get returns the status of GET http://addr/path, 0 when it fails.
func get(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
