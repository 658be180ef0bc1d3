package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	havro "github.com/heraldhq/herald/pkg/avro"
	"github.com/heraldhq/herald/pkg/catalog"
	"github.com/heraldhq/herald/pkg/httpapi"
	"github.com/heraldhq/herald/pkg/rules"
)

// catalogRoutes adds the catalog of ready-made notification types: GET
// /v1/catalog lists it, POST /v1/catalog/{name}:install creates a rule
// from one entry.
func (a *API) catalogRoutes(mux *router, read, write func(http.HandlerFunc) http.Handler) {
	c := catalog.New()
	mux.Handle("GET /v1/catalog", read(func(w http.ResponseWriter, r *http.Request) {
		p, err := parsePage(r)
		if err != nil {
			httpapi.WriteError(w, r, a.base.Log, err)
			return
		}
		items, next := paginate(c.Entries(), position, p)
		writePage(w, r, items, next)
	}))
	// An installed entry is a rule: created, stored and answered exactly
	// as POST /v1/rules does, from the rule the entry builds.
	install := a.ruleKind()
	install.check = a.checkInstall(c)
	mux.Handle("POST /v1/catalog/{action}", write(a.create(install)))
}

// installRequest is the body of POST /v1/catalog/{name}:install.
type installRequest struct {
	// Name names the rule; the entry's name when empty.
	Name         string         `json:"name"`
	Parameters   map[string]any `json:"parameters"`
	Destinations []string       `json:"destinations"`
}

// checkInstall builds the rule an install asks for and checks it as POST
// /v1/rules checks a rule a tenant writes.
func (a *API) checkInstall(c *catalog.Catalog) func(r *http.Request, w http.ResponseWriter, tenant, id string) (any, error) {
	return func(r *http.Request, w http.ResponseWriter, tenant, id string) (any, error) {
		name, ok := strings.CutSuffix(r.PathValue("action"), ":install")
		e, found := c.Lookup(name)
		if !ok || !found {
			return nil, httpapi.NewProblem(http.StatusNotFound, fmt.Sprintf("no catalog entry %q; GET /v1/catalog lists them", name))
		}
		var req installRequest
		if err := httpapi.DecodeJSON(w, r, &req); err != nil {
			return nil, err
		}
		// An entry whose parameters name values of a field checks them
		// against the schema the evaluator will read events with.
		var entities map[string]rules.Entity
		if e.NeedsSchema() {
			var err error
			if entities, err = a.base.Entities(r.Context(), e.On.EntityTypes, true); err != nil {
				if errors.Is(err, havro.ErrSubjectNotFound) {
					return nil, badRequest("on.entityTypes", err.Error()+": no schema is registered for it")
				}
				return nil, err
			}
		}
		spec, err := e.Rule(req.Parameters, entities)
		var pe *catalog.ParameterError
		if errors.As(err, &pe) {
			return nil, badRequest("parameters."+pe.Parameter, pe.Message)
		}
		if err != nil {
			return nil, err
		}
		if req.Name != "" {
			spec.Name = req.Name
		}
		spec.Destinations = req.Destinations

		// The rule goes through checkRule itself, as a request body, so
		// that an install meets every check a written rule meets, now and
		// as they change.
		body, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		rr := r.Clone(r.Context())
		rr.Body, rr.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		checked, err := a.checkRule(rr, w, tenant, id)
		if err != nil {
			return nil, blameParameters(e, err)
		}
		return checked, nil
	}
}

// blameParameters renames the fields of a problem with the rule after the
// parameters they were made from, where the entry says which.
func blameParameters(e *catalog.Entry, err error) error {
	var p *httpapi.Problem
	if !errors.As(err, &p) {
		return err
	}
	out := *p
	out.Errors = make([]httpapi.FieldError, len(p.Errors))
	for i, fe := range p.Errors {
		if param, ok := e.ParameterFor(fe.Field); ok {
			fe.Field = "parameters." + param
		}
		out.Errors[i] = fe
	}
	return &out
}
