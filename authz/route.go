package authz

import (
	"fmt"
	"strings"
)

// Source is a request header that can carry an API key.
type Source uint8

// Sources of keys, in the order a request is searched.
const (
	SourceAuthorization Source = iota // "Authorization: Bearer <key>", as OpenAI clients send it
	SourceXAPIKey                     // "x-api-key: <key>", as Anthropic's SDKs sent it before their 2026-10 majors
	SourceAPIKey                      // "api-key: <key>", as Azure OpenAI clients send it
	// NumSources is one more than the last Source: the length of tables
	// indexed by Source.
	NumSources
)

// NumSourceSets is the number of Sources values: the length of tables
// indexed by a set of Sources.
const NumSourceSets = 1 << NumSources

var sourceHeaders = [NumSources]string{"authorization", "x-api-key", "api-key"}

// Header returns the source's header name in lower case.
func (s Source) Header() string { return sourceHeaders[s] }

// SourceOf returns the Source whose header is named name, in any case.
func SourceOf(name string) (Source, bool) {
	for s, h := range sourceHeaders {
		if len(name) == len(h) && equalFoldASCII(name, h) {
			return Source(s), true
		}
	}
	return 0, false
}

// AllSources lists every Source, for loops over a request's headers.
func AllSources() []Source { return []Source{SourceAuthorization, SourceXAPIKey, SourceAPIKey} }

// Sources is a set of Sources. The empty set is "not set" in a Route.
type Sources uint8

// SourcesOf returns the set that holds ss.
func SourcesOf(ss ...Source) Sources {
	var set Sources
	for _, s := range ss {
		set |= 1 << s
	}
	return set
}

// Has reports whether s holds src.
func (s Sources) Has(src Source) bool { return s&(1<<src) != 0 }

// Headers returns the lower-case names of the set's headers in Source
// order. The slice is shared: do not modify it.
func (s Sources) Headers() []string { return sourceLists[s%NumSourceSets] }

// sourceLists holds Headers for every set, so that answers can name the
// headers to strip without allocating.
var sourceLists = func() (lists [NumSourceSets][]string) {
	for set := range lists {
		for s, h := range sourceHeaders {
			if Sources(set).Has(Source(s)) {
				lists[set] = append(lists[set], h)
			}
		}
	}
	return lists
}()

// String returns the set as ParseSources reads it.
func (s Sources) String() string { return strings.Join(s.Headers(), ",") }

// ParseSources reads a comma-separated list of header names: authorization,
// x-api-key, api-key, in any case and order, with optional spaces. An empty
// list or an unknown name is an error.
func ParseSources(list string) (Sources, error) {
	var set Sources
	for rest := list; ; {
		name, more, found := strings.Cut(rest, ",")
		src, ok := SourceOf(strings.TrimSpace(name))
		if !ok {
			return 0, fmt.Errorf("key header %q is not one of %s", strings.TrimSpace(name), strings.Join(sourceHeaders[:], ", "))
		}
		set |= 1 << src
		if !found {
			return set, nil
		}
		rest = more
	}
}

// Style is the shape of a denial's JSON body.
type Style uint8

// Styles. The zero Style is "not set" in a Route.
const (
	StyleOpenAI    Style = iota + 1 // {"error":{"message":...,"type":...,"param":null,"code":...}}
	StyleAnthropic                  // {"type":"error","error":{"type":...,"message":...}}
	// NumStyles is one more than the last Style: the length of tables
	// indexed by Style, whose element 0 stands for "not set".
	NumStyles
)

var styleNames = [NumStyles]string{StyleOpenAI: "openai", StyleAnthropic: "anthropic"}

// Styles lists every Style, for building per-style tables.
func Styles() []Style { return []Style{StyleOpenAI, StyleAnthropic} }

// DefaultSources returns the headers a route of style s accepts when
// neither it nor the Authorizer's defaults say: Authorization for OpenAI
// clients; Authorization and x-api-key for Anthropic's, whose SDKs send one
// or the other depending on their release.
func (s Style) DefaultSources() Sources {
	if s == StyleAnthropic {
		return SourcesOf(SourceAuthorization, SourceXAPIKey)
	}
	return SourcesOf(SourceAuthorization)
}

func (s Style) String() string {
	if s < NumStyles && s != 0 {
		return styleNames[s]
	}
	return "unknown"
}

// ParseStyle reads a Style by name ("openai" or "anthropic", in any case).
func ParseStyle(name string) (Style, error) {
	for _, s := range Styles() {
		if len(name) == len(styleNames[s]) && equalFoldASCII(name, styleNames[s]) {
			return s, nil
		}
	}
	return 0, fmt.Errorf("error style %q is not openai or anthropic", name)
}

// Route is what one route of the proxy asks of keygate: the headers that
// may carry the key, and the style of denial bodies. A zero field is not
// set: the Authorizer fills it from its defaults.
type Route struct {
	Sources Sources
	Style   Style
	// Invalid marks settings that could not be read. A request on such a
	// route is denied with ReasonBadRoute, whatever it carries.
	Invalid bool
}

// Names of the route settings, as keys of Envoy's context_extensions.
const (
	RouteKeyHeaders = "keygate_credentials" // a list for ParseSources
	RouteErrorStyle = "keygate_error_style" // a name for ParseStyle
)

// DefaultRoute is what a Route falls back to when neither it nor the
// Authorizer's defaults say: OpenAI bodies, and the headers of the route's
// Style (Style.DefaultSources).
var DefaultRoute = Route{Style: StyleOpenAI}

// ParseRoute reads a route's settings: the list of key headers and the
// style. An empty string leaves its field unset; a value that does not
// parse makes the route Invalid. It does not allocate unless a value is
// invalid.
func ParseRoute(keyHeaders, style string) Route {
	var r Route
	var err error
	if keyHeaders != "" {
		if r.Sources, err = ParseSources(keyHeaders); err != nil {
			r.Invalid = true
		}
	}
	if style != "" {
		if r.Style, err = ParseStyle(style); err != nil {
			r.Invalid = true
		}
	}
	return r
}

// Or returns r with its unset fields taken from def.
func (r Route) Or(def Route) Route {
	if r.Sources == 0 {
		r.Sources = def.Sources
	}
	if r.Style == 0 {
		r.Style = def.Style
	}
	r.Invalid = r.Invalid || def.Invalid
	return r
}

// complete returns r with its unset fields taken from def, then from
// DefaultRoute and its Style's DefaultSources.
func (r Route) complete(def Route) Route {
	r = r.Or(def).Or(DefaultRoute)
	if r.Sources == 0 {
		r.Sources = r.Style.DefaultSources()
	}
	return r
}
