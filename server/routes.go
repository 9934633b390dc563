package server

import (
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// The routing table: every route the server answers, task API, KServe v2
// and operations alike, is a Feature registered from its file's init with
// addFeature. There is no other way in: handle matches a request against
// this table, then runs the same steps for every route (CORS, draining,
// method, API key, admission, body, deadline) before the handler.
//
// A Feature's zero flags are the safe defaults: API key required (when
// keys are configured), admitted against the in-flight and memory limits,
// refused while draining, errors in the task API's format.
type Feature struct {
	Method string
	// Pattern is a path whose {name} segments bind variables, as in
	// "/v1/collections/{c}/items/{id}". {m} is a model name; {v} a model
	// version, of which only "1" exists.
	Pattern string
	Handle  func(s *Server, ctx *fasthttp.RequestCtx, p routeParams)
	// KServe answers errors in KServe's {"error": "..."} format.
	KServe bool
	// Access says what a caller needs when API keys are configured.
	Access Access
	// Probe marks health checks and metrics: they skip admission, read no
	// body and keep answering while the server drains, so an orchestrator
	// sees a busy or draining server as it is.
	Probe bool
	// Background marks the jobs API's routes: a request to one is not
	// interactive work, which job items make way for.
	Background bool
}

// Access is a route's requirement for callers when API keys are
// configured; without keys every route is open.
type Access int

const (
	// AccessKey wants "Authorization: Bearer <key>".
	AccessKey Access = iota
	// AccessKeyOrHeader also takes the key in "x-api-key", as rembg's and
	// IOPaint's clients send it.
	AccessKeyOrHeader
	// AccessMetrics is open unless the server requires keys for /metrics.
	AccessMetrics
	// AccessOpen is for health probes.
	AccessOpen
)

var features []Feature

func addFeature(f ...Feature) { features = append(features, f...) }

type handler func(ctx *fasthttp.RequestCtx, p routeParams)

type routeParams struct {
	model string
	// vars holds the route's {name} segments.
	vars map[string]string
}

// Var is a {name} segment of the matched route.
func (p routeParams) Var(name string) string { return p.vars[name] }

// matchPattern binds a pattern against a path and tells how many of its
// segments are literal, so that /v2/models/stats beats /v2/models/{m}.
func matchPattern(pattern, path string) (vars map[string]string, literal int, ok bool) {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return nil, 0, false
	}
	for i, seg := range ps {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			if xs[i] == "" {
				return nil, 0, false
			}
			if vars == nil {
				vars = map[string]string{}
			}
			vars[strings.TrimSuffix(name, "}")] = xs[i]
			continue
		}
		if seg != xs[i] {
			return nil, 0, false
		}
		literal++
	}
	return vars, literal, true
}

// route is a matched Feature, or for an unmatched path the error format to
// answer in.
type route struct {
	Feature
	// methods are every method the path answers, for Allow and CORS
	// preflights.
	methods []string
}

// name labels the route in logs and metrics: its pattern, never user data.
func (r route) name() string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// match finds the route for a request: the most specific pattern that
// matches the path with this method (HEAD runs GET routes). A path that
// matches only with other methods returns that route with errMethodAllowed.
func (s *Server) match(method, path string) (route, routeParams, error) {
	var (
		best     *Feature
		bestLit  = -1
		bestVars map[string]string
		other    *Feature
		methods  []string
	)
	if method == "HEAD" {
		method = "GET"
	}
	for i := range features {
		f := &features[i]
		vars, lit, ok := matchPattern(f.Pattern, path)
		if !ok {
			continue
		}
		if !slices.Contains(methods, f.Method) {
			methods = append(methods, f.Method)
		}
		if f.Method != method {
			if other == nil {
				other = f
			}
			continue
		}
		if lit > bestLit {
			best, bestLit, bestVars = f, lit, vars
		}
	}
	switch {
	case best != nil:
		p := routeParams{model: bestVars["m"], vars: bestVars}
		if v := bestVars["v"]; v != "" && v != "1" {
			// Triton clients may name a version; there is one, "1".
			return route{Feature: *best, methods: methods}, p, newError(404, "not_found", "model "+p.model+" has only version 1")
		}
		return route{Feature: *best, methods: methods}, p, nil
	case other != nil:
		return route{Feature: *other, methods: methods}, routeParams{}, errMethodAllowed
	}
	return route{Feature: Feature{KServe: strings.HasPrefix(path, "/v2/")}}, routeParams{}, errNotFound
}
