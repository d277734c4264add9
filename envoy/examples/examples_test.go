// Package examples holds Envoy, Envoy Gateway and Istio configurations for
// keygate, and the tests that keep them loadable. There is no Envoy binary to
// load them with, so the tests do what Envoy's config loading does with the
// Go version of its protos: strict YAML → proto parsing, the protoc-gen-validate
// rules (inside every typed_config too), and checks of the ext_authz wiring
// that no schema expresses.
package examples

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	// Extensions the examples name in typed_config. protojson resolves an
	// Any's "@type" through the global registry, so each must be linked in;
	// a missing one shows up as "unable to resolve" when loading.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
)

// keygate's fixed facts, as the examples must reflect them.
const (
	keygatePort       = 9191
	healthServiceName = "envoy.service.auth.v3.Authorization"
	http2OptionsKey   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// credentialHeaders are the request headers keygate reads a key from; every
// ext_authz configuration must let them through to the Check request.
var credentialHeaders = []string{"authorization", "x-api-key", "api-key"}

// ---------------------------------------------------------------------------
// Loading and validating an Envoy bootstrap.

// loadBootstrap parses an Envoy bootstrap the strict way: YAML → JSON →
// protojson with unknown fields rejected, every typed_config Any resolved
// against the linked-in extension types (and parsed just as strictly).
func loadBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := new(bootstrapv3.Bootstrap)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

// node is a message found in a config tree: the root, or what an Any holds.
type node struct {
	path string
	msg  proto.Message
}

// unpackAll returns root and the contents of every Any below it, however
// deeply nested (an Any inside an unpacked Any included), each with a path.
// An Any whose type is not linked in, or whose bytes do not parse, is an error.
func unpackAll(root proto.Message) ([]node, error) {
	nodes := []node{{path: "", msg: root}}
	var errs []error
	var walk func(m protoreflect.Message, path string)
	walk = func(m protoreflect.Message, path string) {
		if a, ok := m.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: unpacking %s: %w", path, a.GetTypeUrl(), err))
				return
			}
			p := path + "<" + string(inner.ProtoReflect().Descriptor().Name()) + ">"
			nodes = append(nodes, node{path: p, msg: inner})
			walk(inner.ProtoReflect(), p)
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := joinPath(path, string(fd.Name()))
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() == nil {
					return true
				}
				var keys []protoreflect.MapKey
				v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
					keys = append(keys, k)
					return true
				})
				sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
				for _, k := range keys {
					walk(v.Map().Get(k).Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				}
			case fd.Message() == nil:
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
				}
			default:
				walk(v.Message(), p)
			}
			return true
		})
	}
	walk(root.ProtoReflect(), "")
	return nodes, errors.Join(errs...)
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// validateDeep runs the protoc-gen-validate rules on m and on the contents of
// every Any below it. ValidateAll alone stops at an Any: it never sees the
// filter configurations, which is where keygate's settings live.
func validateDeep(m proto.Message) error {
	nodes, err := unpackAll(m)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		v, ok := n.msg.(interface{ ValidateAll() error })
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %T has no validation rules to run", n.path, n.msg))
			continue
		}
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", orRoot(n.path), err))
		}
	}
	return errors.Join(errs...)
}

func orRoot(path string) string {
	if path == "" {
		return "bootstrap"
	}
	return path
}

// checkBootstrapFile is everything a bootstrap must pass: strict loading,
// deep validation, and the ext_authz semantics.
func checkBootstrapFile(data []byte) error {
	b, err := loadBootstrap(data)
	if err != nil {
		return err
	}
	if err := validateDeep(b); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	if err := checkBootstrap(b); err != nil {
		return fmt.Errorf("semantics: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// What the schemas cannot say.

// checkBootstrap checks the keygate wiring of a bootstrap: each HTTP
// connection manager runs ext_authz before the router, each ext_authz filter
// is set up as keygate needs (checkExtAuthz), per-route configs name filters
// that exist, routes name defined clusters, and clusters are sound
// (checkClusters).
func checkBootstrap(b *bootstrapv3.Bootstrap) error {
	nodes, err := unpackAll(b)
	if err != nil {
		return err
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	var errs []error
	extAuthzFilters := 0
	for _, n := range nodes {
		hcm, ok := n.msg.(*hcmv3.HttpConnectionManager)
		if !ok {
			continue
		}
		filters, err := checkHTTPFilters(n.path, hcm)
		errs = append(errs, err)
		for _, name := range sortedKeys(filters) {
			if ea, ok := filters[name].(*extauthzv3.ExtAuthz); ok {
				extAuthzFilters++
				errs = append(errs, checkExtAuthz(n.path+".http_filters["+name+"]", ea, clusters))
			}
		}
		errs = append(errs, checkRoutes(n.path+".route_config", hcm.GetRouteConfig(), filters, clusters))
	}
	if extAuthzFilters == 0 {
		errs = append(errs, errors.New("no envoy.extensions.filters.http.ext_authz.v3.ExtAuthz filter in any HTTP connection manager"))
	}
	errs = append(errs, checkClusters(b))
	return errors.Join(errs...)
}

// checkHTTPFilters checks the filter order of one HTTP connection manager and
// returns its filters' configurations by name.
func checkHTTPFilters(path string, hcm *hcmv3.HttpConnectionManager) (map[string]proto.Message, error) {
	var errs []error
	filters := map[string]proto.Message{}
	fs := hcm.GetHttpFilters()
	router := -1
	for i, f := range fs {
		if f.GetTypedConfig() == nil {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d] %q: no typed_config", path, i, f.GetName()))
			continue
		}
		cfg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d]: %w", path, i, err))
			continue
		}
		if _, dup := filters[f.GetName()]; dup {
			errs = append(errs, fmt.Errorf("%s.http_filters[%d]: second filter named %q", path, i, f.GetName()))
		}
		filters[f.GetName()] = cfg
		if _, ok := cfg.(*routerv3.Router); ok {
			router = i
		}
	}
	// Filters after the router never run; ext_authz must come before it.
	if router != len(fs)-1 {
		errs = append(errs, fmt.Errorf("%s.http_filters: the router must be the last filter", path))
	}
	return filters, errors.Join(errs...)
}

// checkExtAuthz checks one ext_authz filter against what keygate needs.
func checkExtAuthz(path string, ea *extauthzv3.ExtAuthz, clusters map[string]*clusterv3.Cluster) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if v := ea.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
		bad("transport_api_version is %v: keygate serves the v3 API only; set V3", v)
	}
	if ea.GetFailureModeAllow() {
		bad("failure_mode_allow is true: when keygate cannot answer, every request would pass unchecked")
	}
	if s := ea.GetStatusOnError(); s == nil {
		bad("status_on_error unset: an outage would answer 403, like a denial; set a 5xx")
	} else if c := int(s.GetCode()); c < 500 || c > 599 {
		bad("status_on_error is %d: use a 5xx, so an outage is not mistaken for keygate's 401/403", c)
	}
	if ea.GetAllowedHeaders() == nil {
		bad("allowed_headers unset: Envoy would send keygate every request header")
	} else {
		for _, h := range credentialHeaders {
			if !matchesAny(ea.GetAllowedHeaders(), h) {
				bad("allowed_headers does not let %q through: keygate would never see that key", h)
			}
		}
		if matchesAny(ea.GetAllowedHeaders(), "cookie") {
			bad("allowed_headers lets \"cookie\" through: send keygate only the headers it reads")
		}
	}

	gs := ea.GetGrpcService()
	if gs == nil {
		bad("no grpc_service: keygate's Check service is gRPC")
		return errors.Join(errs...)
	}
	if err := positive(gs.GetTimeout()); err != nil {
		bad("grpc_service.timeout %v", err)
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		bad("grpc_service must use envoy_grpc, so the keygate cluster's HTTP/2 and health checks apply")
		return errors.Join(errs...)
	}
	name := eg.GetClusterName()
	c, ok := clusters[name]
	switch {
	case name == "":
		bad("grpc_service.envoy_grpc.cluster_name is empty")
	case !ok:
		bad("grpc_service.envoy_grpc.cluster_name %q names no cluster in static_resources.clusters", name)
	default:
		if err := speaksHTTP2(c); err != nil {
			bad("%v", err)
		}
		if !hasGRPCHealthCheck(c) {
			bad("cluster %q has no gRPC health check of %s", name, healthServiceName)
		}
	}
	return errors.Join(errs...)
}

// speaksHTTP2 reports whether Envoy talks HTTP/2 to the cluster's hosts,
// which gRPC (the Check calls and gRPC health checks) requires. Plain-text
// keygate offers no ALPN, so only an explicit HTTP/2 configuration does.
func speaksHTTP2(c *clusterv3.Cluster) error {
	a, ok := c.GetTypedExtensionProtocolOptions()[http2OptionsKey]
	if !ok {
		return fmt.Errorf("cluster %q: no typed_extension_protocol_options[%s], so Envoy speaks HTTP/1.1 to it; gRPC needs HTTP/2", c.GetName(), http2OptionsKey)
	}
	var o upstreamhttpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		return fmt.Errorf("cluster %q: %s: %w", c.GetName(), http2OptionsKey, err)
	}
	if o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		return fmt.Errorf("cluster %q: %s lacks explicit_http_config.http2_protocol_options, so Envoy does not speak HTTP/2 to it; gRPC needs HTTP/2", c.GetName(), http2OptionsKey)
	}
	return nil
}

func hasGRPCHealthCheck(c *clusterv3.Cluster) bool {
	for _, hc := range c.GetHealthChecks() {
		if g := hc.GetGrpcHealthCheck(); g != nil && g.GetServiceName() == healthServiceName {
			return true
		}
	}
	return false
}

// checkClusters checks every static cluster: connect_timeout positive when
// set, gRPC health checks only over HTTP/2, health check timings positive.
func checkClusters(b *bootstrapv3.Bootstrap) error {
	var errs []error
	for i, c := range b.GetStaticResources().GetClusters() {
		path := fmt.Sprintf("static_resources.clusters[%d] %q", i, c.GetName())
		if c.GetConnectTimeout() != nil {
			if err := positive(c.GetConnectTimeout()); err != nil {
				errs = append(errs, fmt.Errorf("%s: connect_timeout %v", path, err))
			}
		}
		if lc := c.GetLoadAssignment().GetClusterName(); lc != "" && lc != c.GetName() {
			errs = append(errs, fmt.Errorf("%s: load_assignment.cluster_name is %q", path, lc))
		}
		for j, hc := range c.GetHealthChecks() {
			for field, d := range map[string]*durationpb.Duration{"timeout": hc.GetTimeout(), "interval": hc.GetInterval()} {
				if err := positive(d); err != nil {
					errs = append(errs, fmt.Errorf("%s: health_checks[%d].%s %v", path, j, field, err))
				}
			}
			if hc.GetGrpcHealthCheck() != nil {
				if err := speaksHTTP2(c); err != nil {
					errs = append(errs, fmt.Errorf("%s: health_checks[%d] is a gRPC health check: %w", path, j, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkRoutes checks an inline route configuration: routes name defined
// clusters, and typed_per_filter_config keys name a filter of this
// connection manager of the matching kind.
func checkRoutes(path string, rc *routev3.RouteConfiguration, filters map[string]proto.Message, clusters map[string]*clusterv3.Cluster) error {
	if rc == nil {
		return nil // RDS: nothing inline to check
	}
	var errs []error
	perFilter := func(p string, m map[string]*anypb.Any) {
		for _, key := range sortedKeys(m) {
			f, ok := filters[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s.typed_per_filter_config[%q]: no HTTP filter of that name", p, key))
				continue
			}
			cfg, err := m[key].UnmarshalNew()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.typed_per_filter_config[%q]: %w", p, key, err))
				continue
			}
			if fc, ok := cfg.(*routev3.FilterConfig); ok && fc.GetConfig() != nil {
				if cfg, err = fc.GetConfig().UnmarshalNew(); err != nil {
					errs = append(errs, fmt.Errorf("%s.typed_per_filter_config[%q]: %w", p, key, err))
					continue
				}
			}
			if _, perRoute := cfg.(*extauthzv3.ExtAuthzPerRoute); perRoute {
				if _, isExtAuthz := f.(*extauthzv3.ExtAuthz); !isExtAuthz {
					errs = append(errs, fmt.Errorf("%s.typed_per_filter_config[%q]: ExtAuthzPerRoute for a %T filter", p, key, f))
				}
			}
		}
	}
	perFilter(path, rc.GetTypedPerFilterConfig())
	for i, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%d]", path, i)
		perFilter(vp, vh.GetTypedPerFilterConfig())
		for j, r := range vh.GetRoutes() {
			rp := fmt.Sprintf("%s.routes[%d]", vp, j)
			perFilter(rp, r.GetTypedPerFilterConfig())
			if name := r.GetRoute().GetCluster(); name != "" {
				if _, ok := clusters[name]; !ok {
					errs = append(errs, fmt.Errorf("%s.route.cluster %q names no cluster in static_resources.clusters", rp, name))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func positive(d *durationpb.Duration) error {
	switch {
	case d == nil:
		return errors.New("is unset")
	case d.CheckValid() != nil:
		return d.CheckValid()
	case d.AsDuration() <= 0:
		return fmt.Errorf("is %v; it must be positive", d.AsDuration())
	}
	return nil
}

// matchesAny reports whether a header name passes Envoy's ListStringMatcher
// (exact, prefix, suffix, contains, with ignore_case; safe_regex as RE2).
func matchesAny(l *matcherv3.ListStringMatcher, s string) bool {
	for _, m := range l.GetPatterns() {
		v := s
		fold := func(p string) string { return p }
		if m.GetIgnoreCase() {
			v = strings.ToLower(v)
			fold = strings.ToLower
		}
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			if v == fold(p.Exact) {
				return true
			}
		case *matcherv3.StringMatcher_Prefix:
			if strings.HasPrefix(v, fold(p.Prefix)) {
				return true
			}
		case *matcherv3.StringMatcher_Suffix:
			if strings.HasSuffix(v, fold(p.Suffix)) {
				return true
			}
		case *matcherv3.StringMatcher_Contains:
			if strings.Contains(v, fold(p.Contains)) {
				return true
			}
		case *matcherv3.StringMatcher_SafeRegex:
			if re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$"); err == nil && re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Kubernetes manifests (Envoy Gateway, Istio).

type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// k8sDoc is one document of a manifest file.
type k8sDoc struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	raw        []byte
}

// The kinds keygate's wiring depends on are decoded strictly, so a misspelt
// field (failOpne, backendRef for backendRefs) is an error, not a silent
// default. Only fields whose names were checked against Envoy Gateway's and
// Istio's API definitions are modelled.

type service struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name        string `json:"name,omitempty"`
			AppProtocol string `json:"appProtocol,omitempty"`
			Port        int    `json:"port"`
			TargetPort  any    `json:"targetPort,omitempty"` // a number or a port name
		} `json:"ports"`
	} `json:"spec"`
}

// securityPolicy is gateway.envoyproxy.io/v1alpha1 SecurityPolicy, as far as
// keygate uses it (api/v1alpha1 ext_auth_types.go: ExtAuth, GRPCExtAuthService
// with BackendCluster inlined).
type securityPolicy struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		TargetRefs []struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"targetRefs"`
		ExtAuth *struct {
			GRPC *struct {
				BackendRefs []struct {
					Group     string `json:"group,omitempty"`
					Kind      string `json:"kind,omitempty"`
					Name      string `json:"name"`
					Namespace string `json:"namespace,omitempty"`
					Port      int    `json:"port"`
				} `json:"backendRefs"`
			} `json:"grpc,omitempty"`
			HTTP             map[string]any `json:"http,omitempty"`
			HeadersToExtAuth []string       `json:"headersToExtAuth,omitempty"`
			Timeout          string         `json:"timeout,omitempty"`
			FailOpen         *bool          `json:"failOpen,omitempty"`
		} `json:"extAuth"`
	} `json:"spec"`
}

// istioOperator is install.istio.io/v1alpha1 IstioOperator, reduced to the
// mesh config's extension providers (istio.mesh.v1alpha1.MeshConfig
// .ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider).
type istioOperator struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   *objectMeta `json:"metadata,omitempty"`
	Spec       struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string `json:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service       string `json:"service"`
					Port          int    `json:"port"`
					Timeout       string `json:"timeout,omitempty"`
					FailOpen      *bool  `json:"failOpen,omitempty"`
					StatusOnError string `json:"statusOnError,omitempty"`
				} `json:"envoyExtAuthzGrpc,omitempty"`
			} `json:"extensionProviders"`
		} `json:"meshConfig"`
	} `json:"spec"`
}

// authorizationPolicy is security.istio.io AuthorizationPolicy.
type authorizationPolicy struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Selector *struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector,omitempty"`
		Action   string `json:"action"`
		Provider *struct {
			Name string `json:"name"`
		} `json:"provider,omitempty"`
		Rules []struct {
			From []map[string]any `json:"from,omitempty"`
			To   []struct {
				Operation struct {
					Hosts      []string `json:"hosts,omitempty"`
					NotHosts   []string `json:"notHosts,omitempty"`
					Ports      []string `json:"ports,omitempty"`
					NotPorts   []string `json:"notPorts,omitempty"`
					Methods    []string `json:"methods,omitempty"`
					NotMethods []string `json:"notMethods,omitempty"`
					Paths      []string `json:"paths,omitempty"`
					NotPaths   []string `json:"notPaths,omitempty"`
				} `json:"operation"`
			} `json:"to,omitempty"`
			When []map[string]any `json:"when,omitempty"`
		} `json:"rules"`
	} `json:"spec"`
}

// deployment is read leniently: only the pod labels and container ports.
type deployment struct {
	Spec struct {
		Template struct {
			Metadata objectMeta `json:"metadata"`
			Spec     struct {
				Containers []struct {
					Ports []struct {
						Name          string `json:"name"`
						ContainerPort int    `json:"containerPort"`
					} `json:"ports"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseManifest splits a multi-document YAML file on "---" lines and reads
// each document's type; documents holding only comments are skipped.
func parseManifest(data []byte) ([]k8sDoc, error) {
	var docs []k8sDoc
	for i, part := range docSeparator.Split(string(data), -1) {
		var probe map[string]any
		if err := yaml.Unmarshal([]byte(part), &probe); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(probe) == 0 {
			continue
		}
		var d k8sDoc
		if err := yaml.Unmarshal([]byte(part), &d); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if d.APIVersion == "" || d.Kind == "" {
			return nil, fmt.Errorf("document %d: no apiVersion or kind", i)
		}
		d.raw = []byte(part)
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, errors.New("no documents")
	}
	return docs, nil
}

func (d k8sDoc) String() string {
	if d.Metadata.Name == "" {
		return d.Kind
	}
	return d.Kind + "/" + d.Metadata.Name
}

// checkManifest checks one file's documents: the kinds keygate depends on
// decode strictly and are wired to each other and to keygate's port.
func checkManifest(docs []k8sDoc) error {
	var (
		errs      []error
		services  []service
		deploys   []deployment
		sps       []securityPolicy
		providers = map[string]bool{} // envoyExtAuthzGrpc provider names
		aps       []authorizationPolicy
		routes    = map[string]bool{}
	)
	strict := func(d k8sDoc, into any) bool {
		if err := yaml.UnmarshalStrict(d.raw, into); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			return false
		}
		// encoding/json matches field names regardless of case; the API
		// server does not, and would drop "failopen" as unknown.
		var generic any
		if err := yaml.Unmarshal(d.raw, &generic); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			return false
		}
		if err := exactFieldNames(generic, reflect.TypeOf(into), ""); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d, err))
			return false
		}
		return true
	}
	var operators []istioOperator
	for _, d := range docs {
		switch d.Kind {
		case "Service":
			var s service
			if strict(d, &s) {
				services = append(services, s)
			}
		case "Deployment":
			var dep deployment
			if err := yaml.Unmarshal(d.raw, &dep); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", d, err))
			}
			deploys = append(deploys, dep)
		case "HTTPRoute":
			routes[d.Metadata.Name] = true
		case "SecurityPolicy":
			var sp securityPolicy
			if strict(d, &sp) {
				sps = append(sps, sp)
			}
		case "IstioOperator":
			var op istioOperator
			if strict(d, &op) {
				operators = append(operators, op)
			}
		case "AuthorizationPolicy":
			var ap authorizationPolicy
			if strict(d, &ap) {
				aps = append(aps, ap)
			}
		}
	}

	// keygateService finds the Service a reference names and checks it
	// exposes keygate's port on a pod port that is keygate's.
	keygateService := func(where, name, namespace string, port int) {
		for _, s := range services {
			if s.Metadata.Name != name || (namespace != "" && s.Metadata.Namespace != namespace) {
				continue
			}
			for _, p := range s.Spec.Ports {
				if p.Port == port {
					errs = append(errs, checkTargetPort(s, p.TargetPort, p.Port, deploys))
					return
				}
			}
			errs = append(errs, fmt.Errorf("%s: Service %q has no port %d", where, name, port))
			return
		}
		errs = append(errs, fmt.Errorf("%s: no Service %q (namespace %q) in this file", where, name, namespace))
	}

	for _, sp := range sps {
		where := "SecurityPolicy/" + sp.Metadata.Name
		if sp.APIVersion != "gateway.envoyproxy.io/v1alpha1" {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q", where, sp.APIVersion))
		}
		if len(sp.Spec.TargetRefs) == 0 {
			errs = append(errs, fmt.Errorf("%s: no targetRefs", where))
		}
		for _, t := range sp.Spec.TargetRefs {
			if t.Kind == "HTTPRoute" && !routes[t.Name] {
				errs = append(errs, fmt.Errorf("%s: targetRefs names HTTPRoute %q, not in this file", where, t.Name))
			}
		}
		ea := sp.Spec.ExtAuth
		if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
			errs = append(errs, fmt.Errorf("%s: extAuth.grpc is how keygate is called (and extAuth.http must be absent)", where))
			continue
		}
		if len(ea.GRPC.BackendRefs) == 0 {
			errs = append(errs, fmt.Errorf("%s: extAuth.grpc.backendRefs is empty", where))
		}
		for _, r := range ea.GRPC.BackendRefs {
			if r.Kind != "" && r.Kind != "Service" {
				errs = append(errs, fmt.Errorf("%s: backendRef kind %q; keygate runs behind a Service", where, r.Kind))
				continue
			}
			if r.Port != keygatePort {
				errs = append(errs, fmt.Errorf("%s: backendRef %q port %d, keygate's Check port is %d", where, r.Name, r.Port, keygatePort))
				continue
			}
			keygateService(where, r.Name, r.Namespace, r.Port)
		}
		if ea.FailOpen == nil || *ea.FailOpen {
			errs = append(errs, fmt.Errorf("%s: extAuth.failOpen must be set to false (fail closed)", where))
		}
		for _, h := range credentialHeaders {
			if !slices.Contains(ea.HeadersToExtAuth, h) {
				errs = append(errs, fmt.Errorf("%s: extAuth.headersToExtAuth lacks %q: keygate would never see that key", where, h))
			}
		}
		if ea.Timeout != "" {
			if err := gatewayDuration(ea.Timeout); err != nil {
				errs = append(errs, fmt.Errorf("%s: extAuth.timeout: %w", where, err))
			}
		}
	}

	for _, op := range operators {
		for _, p := range op.Spec.MeshConfig.ExtensionProviders {
			g := p.EnvoyExtAuthzGrpc
			if g == nil {
				continue
			}
			where := "IstioOperator extensionProviders " + strconv.Quote(p.Name)
			providers[p.Name] = true
			if g.Port != keygatePort {
				errs = append(errs, fmt.Errorf("%s: port %d, keygate's Check port is %d", where, g.Port, keygatePort))
			}
			if g.FailOpen == nil || *g.FailOpen {
				errs = append(errs, fmt.Errorf("%s: failOpen must be set to false (fail closed)", where))
			}
			if err := protoDuration(g.Timeout); err != nil {
				errs = append(errs, fmt.Errorf("%s: timeout: %w", where, err))
			}
			if g.StatusOnError != "" {
				if c, err := strconv.Atoi(g.StatusOnError); err != nil || c < 500 || c > 599 {
					errs = append(errs, fmt.Errorf("%s: statusOnError %q: use a 5xx, so an outage is not mistaken for keygate's 401/403", where, g.StatusOnError))
				}
			}
			// service is "<name>.<namespace>.svc.cluster.local".
			name, ns, ok := strings.Cut(strings.TrimSuffix(g.Service, ".svc.cluster.local"), ".")
			if !ok || !strings.HasSuffix(g.Service, ".svc.cluster.local") || strings.Contains(ns, ".") {
				errs = append(errs, fmt.Errorf("%s: service %q: want <name>.<namespace>.svc.cluster.local", where, g.Service))
				continue
			}
			keygateService(where, name, ns, g.Port)
		}
	}

	for _, ap := range aps {
		where := "AuthorizationPolicy/" + ap.Metadata.Name
		if !strings.HasPrefix(ap.APIVersion, "security.istio.io/") {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q", where, ap.APIVersion))
		}
		if ap.Spec.Action != "CUSTOM" {
			errs = append(errs, fmt.Errorf("%s: action %q; an external authorizer needs CUSTOM", where, ap.Spec.Action))
		}
		switch {
		case ap.Spec.Provider == nil || ap.Spec.Provider.Name == "":
			errs = append(errs, fmt.Errorf("%s: no provider.name", where))
		case !providers[ap.Spec.Provider.Name]:
			errs = append(errs, fmt.Errorf("%s: provider %q is not an envoyExtAuthzGrpc extension provider in this file", where, ap.Spec.Provider.Name))
		}
		// A policy without rules never matches: nothing would be checked.
		if len(ap.Spec.Rules) == 0 {
			errs = append(errs, fmt.Errorf("%s: no rules, so the policy matches no request", where))
		}
	}
	return errors.Join(errs...)
}

// exactFieldNames reports the keys of v (a decoded YAML document) that are
// not, with exact case, the JSON name of a field of t, at any depth.
func exactFieldNames(v any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[name] = t.Field(i).Type
			}
		}
		for _, k := range sortedKeys(m) {
			ft, ok := fields[k]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown field %q (field names are case-sensitive)", path+k))
				continue
			}
			errs = append(errs, exactFieldNames(m[k], ft, path+k+"."))
		}
	case reflect.Slice:
		l, _ := v.([]any)
		for i, e := range l {
			errs = append(errs, exactFieldNames(e, t.Elem(), fmt.Sprintf("%s%d.", path, i)))
		}
	}
	return errors.Join(errs...)
}

// checkTargetPort checks that a Service port reaches container port
// keygatePort in the Deployments of this file that its selector picks.
func checkTargetPort(s service, target any, port int, deploys []deployment) error {
	for _, d := range deploys {
		if !selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, cp := range c.Ports {
				hit := false
				switch t := target.(type) {
				case nil:
					hit = cp.ContainerPort == port
				case string:
					hit = cp.Name == t
				case float64: // JSON numbers
					hit = cp.ContainerPort == int(t)
				}
				if hit {
					if cp.ContainerPort != keygatePort {
						return fmt.Errorf("Service/%s port %d reaches container port %d, not keygate's %d", s.Metadata.Name, port, cp.ContainerPort, keygatePort)
					}
					return nil
				}
			}
		}
		return fmt.Errorf("Service/%s port %d: targetPort %v matches no container port", s.Metadata.Name, port, target)
	}
	return nil // the Deployment lives elsewhere
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// gatewayDuration checks a Gateway API Duration (GEP-2257), e.g. "250ms".
func gatewayDuration(s string) error {
	if !regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`).MatchString(s) {
		return fmt.Errorf("%q is not a Gateway API duration", s)
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("%q: must be positive", s)
	}
	return err
}

// protoDuration checks a google.protobuf.Duration in its JSON form ("0.25s"),
// which is how Istio reads durations in the mesh config.
func protoDuration(s string) error {
	if s == "" {
		return errors.New("unset (Istio's default is 600s)")
	}
	var d durationpb.Duration
	if err := protojson.Unmarshal([]byte(strconv.Quote(s)), &d); err != nil {
		return fmt.Errorf("%q is not a protobuf duration: %w", s, err)
	}
	return positive(&d)
}

// ---------------------------------------------------------------------------
// The tests.

// exampleFiles reads every YAML file here and sorts it into Envoy bootstraps
// (top-level static_resources) and Kubernetes manifests.
func exampleFiles(t *testing.T) (bootstraps, manifests map[string][]byte) {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bootstraps, manifests = map[string][]byte{}, map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]any
		if err := yaml.Unmarshal(data, &top); err == nil && top["static_resources"] != nil {
			bootstraps[p] = data
		} else {
			manifests[p] = data
		}
	}
	for _, want := range []string{"envoy.yaml", "sidecar.yaml"} {
		if bootstraps[want] == nil {
			t.Errorf("%s: missing, or not an Envoy bootstrap", want)
		}
	}
	for _, want := range []string{"envoy-gateway.yaml", "istio.yaml"} {
		if manifests[want] == nil {
			t.Errorf("%s: missing", want)
		}
	}
	return bootstraps, manifests
}

func TestBootstrapsLoadAndValidate(t *testing.T) {
	bootstraps, _ := exampleFiles(t)
	for _, name := range sortedKeys(bootstraps) {
		t.Run(name, func(t *testing.T) {
			if err := checkBootstrapFile(bootstraps[name]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestManifestsParseAndWireKeygate(t *testing.T) {
	_, manifests := exampleFiles(t)
	for _, name := range sortedKeys(manifests) {
		t.Run(name, func(t *testing.T) {
			docs, err := parseManifest(manifests[name])
			if err != nil {
				t.Fatal(err)
			}
			if err := checkManifest(docs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The Envoy Gateway and Istio files must each actually contain the resources
// the checks above look at; a file without them would pass vacuously.
func TestManifestsHaveTheKeyResources(t *testing.T) {
	_, manifests := exampleFiles(t)
	want := map[string][]string{
		"envoy-gateway.yaml": {"SecurityPolicy", "Service", "Deployment", "HTTPRoute"},
		"istio.yaml":         {"IstioOperator", "AuthorizationPolicy", "Service"},
	}
	for file, kinds := range want {
		docs, err := parseManifest(manifests[file])
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, k := range kinds {
			if !slices.ContainsFunc(docs, func(d k8sDoc) bool { return d.Kind == k }) {
				t.Errorf("%s: no %s", file, k)
			}
		}
	}
}

// mutate replaces the single match of pattern in text, failing the test if
// there is not exactly one (so a mutation cannot silently miss).
func mutate(t *testing.T, text, pattern, repl string) []byte {
	t.Helper()
	re := regexp.MustCompile(pattern)
	if n := len(re.FindAllStringIndex(text, -1)); n != 1 {
		t.Fatalf("pattern %q matches %d times, want 1", pattern, n)
	}
	return []byte(re.ReplaceAllString(text, repl))
}

// The ext_authz filter's cluster_name line, and only it (the keygate
// cluster's load_assignment has a cluster_name too).
const extAuthzClusterName = `(envoy_grpc:\s*\n\s*cluster_name:) keygate`

func TestBrokenBootstrapsAreCaught(t *testing.T) {
	good, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, pattern, repl string
		stage               string // "bootstrap" (load), "validate" or "semantics"
		want                string
	}{
		// The three the issue asks for, all inside typed_config.
		{"typo'd field in typed_config", `failure_mode_allow: false`, `failure_mode_alow: false`, "bootstrap", `failure_mode_alow`},
		{"bad enum in typed_config", `transport_api_version: V3`, `transport_api_version: V9`, "bootstrap", `V9`},
		{"empty cluster_name in typed_config", extAuthzClusterName, `$1 ""`, "validate", `ClusterName`},
		// What only the semantic checks see.
		{"cluster_name naming no cluster", extAuthzClusterName, `$1 keygate-typo`, "semantics", `"keygate-typo" names no cluster`},
		{"keygate cluster without HTTP/2", `http2_protocol_options: \{\}`, `http_protocol_options: {}`, "semantics", `gRPC needs HTTP/2`},
		{"fail open", `failure_mode_allow: false`, `failure_mode_allow: true`, "semantics", `failure_mode_allow is true`},
		{"zero Check timeout", `(?m)^(\s+)timeout: 0\.25s`, `${1}timeout: 0s`, "semantics", `grpc_service.timeout is 0s`},
		{"v2 transport", `transport_api_version: V3`, `transport_api_version: V2`, "semantics", `transport_api_version is V2`},
		{"403 on error", `code: ServiceUnavailable`, `code: Forbidden`, "semantics", `status_on_error is 403`},
		{"authorization not sent to keygate", `- exact: authorization`, `- exact: authorisation`, "semantics", `does not let "authorization" through`},
		{"every header sent to keygate", `- exact: api-key`, `- safe_regex: {regex: ".*"}`, "semantics", `lets "cookie" through`},
		{"per-route key naming no filter", `(?m)^(\s+)envoy\.filters\.http\.ext_authz:$`, `${1}envoy.filters.http.ext_auth:`, "semantics", `"envoy.filters.http.ext_auth"]: no HTTP filter`},
		{"route to an undefined cluster", `cluster: upstream`, `cluster: upstreams`, "semantics", `"upstreams" names no cluster`},
		// Caught on loading or by the validation rules.
		{"typo'd field in per-route typed_config", `disabled: true`, `disable: true`, "bootstrap", `disable`},
		{"unknown extension type", `router\.v3\.Router`, `router.v3.Routr`, "bootstrap", `Routr`},
		{"typo'd field outside typed_config", `connect_timeout: 1s`, `conect_timeout: 1s`, "bootstrap", `conect_timeout`},
		{"zero connect_timeout", `connect_timeout: 0\.25s`, `connect_timeout: 0s`, "validate", `ConnectTimeout`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBootstrapFile(mutate(t, string(good), tc.pattern, tc.repl))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), tc.stage+":") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it from %s, mentioning %q", err, tc.stage, tc.want)
			}
			t.Logf("caught: %v", err)
		})
	}
}

// Plain ValidateAll does not look inside typed_config: an empty cluster name
// in the ext_authz filter passes it, and only validateDeep catches it. This
// is why validateDeep exists.
func TestValidateAllDoesNotLookInsideTypedConfig(t *testing.T) {
	good, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadBootstrap(mutate(t, string(good), extAuthzClusterName, `$1 ""`))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll now looks inside typed_config (%v); validateDeep may be simplified", err)
	}
	if err := validateDeep(b); err == nil {
		t.Fatal("validateDeep accepted an empty cluster_name")
	}
}

// The checks are functions over a Bootstrap: they catch mistakes made in Go
// as well as in YAML.
func TestCheckBootstrapOnMessages(t *testing.T) {
	good, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadBootstrap(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "keygate" {
			delete(c.TypedExtensionProtocolOptions, http2OptionsKey)
		}
	}
	if err := checkBootstrap(b); err == nil || !strings.Contains(err.Error(), "speaks HTTP/1.1") {
		t.Fatalf("keygate cluster without protocol options: %v", err)
	}

	// ext_authz after the router.
	nf := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0]
	var hcm hcmv3.HttpConnectionManager
	if err := nf.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(hcm.HttpFilters)
	if err := nf.GetTypedConfig().MarshalFrom(&hcm); err != nil {
		t.Fatal(err)
	}
	if err := checkBootstrap(b); err == nil || !strings.Contains(err.Error(), "the router must be the last filter") {
		t.Fatalf("router before ext_authz: %v", err)
	}
	b.StaticResources.Clusters = slices.DeleteFunc(b.StaticResources.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == "keygate" })
	if err := checkBootstrap(b); err == nil || !strings.Contains(err.Error(), `"keygate" names no cluster`) {
		t.Fatalf("no keygate cluster: %v", err)
	}
}

func TestBrokenManifestsAreCaught(t *testing.T) {
	cases := []struct {
		file, name, pattern, repl, want string
	}{
		{"envoy-gateway.yaml", "fail open", `failOpen: false`, `failOpen: true`, `failOpen must be set to false`},
		{"envoy-gateway.yaml", "failOpen unset", `(?m)^\s+failOpen: false\n`, ``, `failOpen must be set to false`},
		{"envoy-gateway.yaml", "typo'd field", `failOpen: false`, `failOpne: false`, `unknown field "failOpne"`},
		{"envoy-gateway.yaml", "singular backendRef", `(grpc:\s*\n\s*)backendRefs:`, `${1}backendRef:`, `unknown field "backendRef"`},
		{"envoy-gateway.yaml", "backendRef to the admin port", `(- name: keygate .*\n\s+)port: 9191`, `${1}port: 9192`, `port 9192, keygate's Check port is 9191`},
		{"envoy-gateway.yaml", "backendRef to no Service", `- name: keygate  `, `- name: keygait  `, `no Service "keygait"`},
		{"envoy-gateway.yaml", "Service to the admin container port", `targetPort: grpc`, `targetPort: admin`, `reaches container port 9192`},
		{"envoy-gateway.yaml", "authorization not sent", `(?m)^    - authorization$`, `    - authorisation`, `lacks "authorization"`},
		{"envoy-gateway.yaml", "bad timeout", `timeout: 250ms`, `timeout: 0.25s`, `not a Gateway API duration`},
		{"istio.yaml", "fail open", `failOpen: false`, `failOpen: true`, `failOpen must be set to false`},
		{"istio.yaml", "wrong port", `(?m)^(\s+)port: 9191\n(\s+# The Check)`, "${1}port: 9000\n$2", `port 9000`},
		{"istio.yaml", "timeout not a proto duration", `timeout: 0.25s`, `timeout: 250ms`, `not a protobuf duration`},
		{"istio.yaml", "typo'd provider field", `failOpen: false`, `failOpn: false`, `unknown field`},
		{"istio.yaml", "field name in the wrong case", `failOpen: false`, `failopen: false`, `unknown field "spec.meshConfig.extensionProviders.0.envoyExtAuthzGrpc.failopen" (field names are case-sensitive)`},
		{"envoy-gateway.yaml", "field name in the wrong case", `(grpc:\s*\n\s*)backendRefs:`, `${1}backendrefs:`, `unknown field "spec.extAuth.grpc.backendrefs"`},
		{"istio.yaml", "service in no namespace", `service: keygate.keygate.svc.cluster.local`, `service: keygate`, `want <name>.<namespace>.svc.cluster.local`},
		{"istio.yaml", "action ALLOW", `action: CUSTOM`, `action: ALLOW`, `action "ALLOW"`},
		{"istio.yaml", "provider name mismatch", `(?m)^    name: keygate$`, `    name: keygates`, `provider "keygates" is not an envoyExtAuthzGrpc extension provider`},
		{"istio.yaml", "no rules", `(?s)  rules:.*$`, ``, `no rules`},
		{"istio.yaml", "4xx on error", `statusOnError: "503"`, `statusOnError: "403"`, `statusOnError "403"`},
	}
	for _, tc := range cases {
		t.Run(tc.file+"/"+tc.name, func(t *testing.T) {
			good, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := parseManifest(mutate(t, string(good), tc.pattern, tc.repl))
			if err == nil {
				err = checkManifest(docs)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to mention %q", err, tc.want)
			}
			t.Logf("caught: %v", err)
		})
	}
}
