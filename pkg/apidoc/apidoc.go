// Package apidoc is Herald's HTTP API described as an OpenAPI 3.1
// document: every route of the admin API and of ingest, with its
// security, parameters, request body and answers. Both services serve it
// at GET /openapi.json (Register); Operations and MuxPattern let a
// service's tests hold its registered routes and the document to each
// other.
//
// The document names the services that serve each operation in the
// extension x-herald-services. Go's ServeMux matches a wildcard only as a
// whole path segment, so a route such as POST /v1/destinations/{action}
// serves several operations (/v1/destinations/{id}:rotate-secret,
// /v1/destinations/{id}:enable); MuxPattern maps each back to its pattern.
package apidoc

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

//go:embed openapi.json
var document []byte

// Path is where the document is served.
const Path = "/openapi.json"

// JSON returns the document.
func JSON() []byte { return document }

// Register serves the document at GET /openapi.json on mux, unless a
// service sharing mux (as in the devstack) already did.
func Register(mux *http.ServeMux) {
	probe, _ := http.NewRequest(http.MethodGet, Path, nil)
	if _, pattern := mux.Handler(probe); pattern == http.MethodGet+" "+Path {
		return
	}
	mux.HandleFunc(http.MethodGet+" "+Path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(document)
	})
}

// Operation is one operation of the document.
type Operation struct {
	// Method is the HTTP method, upper case.
	Method string
	// Path is the OpenAPI path template.
	Path string
	// Services are the services that serve it.
	Services []string
	// Security lists, for each security requirement, the scheme and the
	// scopes it needs, as "scheme" or "scheme:scope".
	Security []string
	// RequestBody says whether the operation declares a request body.
	RequestBody bool
}

// Serves says whether service serves o.
func (o Operation) Serves(service string) bool {
	for _, s := range o.Services {
		if s == service {
			return true
		}
	}
	return false
}

// Pattern returns the http.ServeMux pattern that serves o.
func (o Operation) Pattern() string { return MuxPattern(o.Method, o.Path) }

// Operations returns the document's operations, ordered by path and method.
func Operations() ([]Operation, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			Services    []string               `json:"x-herald-services"`
			Security    *[]map[string][]string `json:"security"`
			RequestBody json.RawMessage        `json:"requestBody"`
		} `json:"paths"`
		Security []map[string][]string `json:"security"`
	}
	if err := json.Unmarshal(document, &doc); err != nil {
		return nil, fmt.Errorf("decode %s: %w", Path, err)
	}
	var ops []Operation
	for path, item := range doc.Paths {
		for method, o := range item {
			sec := doc.Security
			if o.Security != nil {
				sec = *o.Security
			}
			op := Operation{Method: strings.ToUpper(method), Path: path, Services: o.Services, RequestBody: len(o.RequestBody) > 0}
			for _, req := range sec {
				for scheme, scopes := range req {
					if len(scopes) == 0 {
						op.Security = append(op.Security, scheme)
					}
					for _, s := range scopes {
						op.Security = append(op.Security, scheme+":"+s)
					}
				}
			}
			sort.Strings(op.Security)
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

// MuxPattern returns the http.ServeMux pattern that serves the operation
// method path, path being an OpenAPI path template. A segment that is one
// parameter ({id}) stays one wildcard; a segment that is a parameter with
// a suffix ({id}:rotate-secret, {name}:install) is the wildcard {action},
// which the handler splits, since ServeMux wildcards are whole segments;
// a segment without a parameter (rules:validate) is literal.
func MuxPattern(method, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.Contains(s, "{") && !(strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && strings.Count(s, "{") == 1) {
			segs[i] = "{action}"
		}
	}
	return method + " " + strings.Join(segs, "/")
}

// SamplePath returns path with each parameter replaced by a sample value,
// a URL path a request for the operation could have.
func SamplePath(path string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(path, '{')
		if open < 0 {
			return b.String() + path
		}
		end := strings.IndexByte(path[open:], '}')
		if end < 0 {
			return b.String() + path
		}
		b.WriteString(path[:open])
		b.WriteString("x" + path[open+1:open+end])
		path = path[open+end+1:]
	}
}
