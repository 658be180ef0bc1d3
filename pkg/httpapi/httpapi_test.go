package httpapi_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/heraldhq/herald/pkg/httpapi"
)

// ruleRequest stands for a request body a front door decodes.
type ruleRequest struct {
	Name      string  `json:"name"`
	Threshold float64 `json:"threshold"`
	On        struct {
		EntityTypes []string `json:"entityTypes"`
	} `json:"on"`
	Fields map[string]any `json:"fields"`
}

// decodeHandler decodes a ruleRequest and answers with it, or with the
// problem DecodeJSON reports.
func decodeHandler(got *ruleRequest) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := httpapi.DecodeJSON(w, r, got); err != nil {
			httpapi.WriteError(w, r, slog.New(slog.DiscardHandler), err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// readProblem decodes a problem+json response.
func readProblem(t *testing.T, res *http.Response) httpapi.Problem {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var p httpapi.Problem
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatalf("response is not a problem document: %v", err)
	}
	if p.Status != res.StatusCode {
		t.Errorf("problem status %d differs from the response's %d", p.Status, res.StatusCode)
	}
	return p
}

func TestDecodeJSONRefusesBadBodies(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantField  string // the field the problem points at; "" for none
	}{
		{"string where a number goes", `{"name": "low", "threshold": "80%"}`, http.StatusBadRequest, "threshold"},
		{"number where a string goes", `{"name": 5}`, http.StatusBadRequest, "name"},
		{"wrong type in a nested object", `{"on": {"entityTypes": "Balance"}}`, http.StatusBadRequest, "on.entityTypes"},
		{"unknown field", `{"name": "low", "colour": "red"}`, http.StatusBadRequest, "colour"},
		{"two JSON values", `{"name": "a"} {"name": "b"}`, http.StatusBadRequest, ""},
		{"trailing garbage", `{"name": "a"} x`, http.StatusBadRequest, ""},
		{"empty body", ``, http.StatusBadRequest, ""},
		{"cut short", `{"name": "a"`, http.StatusBadRequest, ""},
		{"not JSON", `name=low`, http.StatusBadRequest, ""},
		{"larger than MaxBody", `{"name": "` + strings.Repeat("a", httpapi.MaxBody) + `"}`, http.StatusRequestEntityTooLarge, ""},
		{"invalid UTF-8 in a value", "{\"name\": \"\xff\xfelow\"}", http.StatusBadRequest, "name"},
		{"invalid UTF-8 in an array item", "{\"on\": {\"entityTypes\": [\"Balance\", \"Sim\xc0\x80\"]}}", http.StatusBadRequest, "on.entityTypes[1]"},
		{"invalid UTF-8 deep in a free-form object", "{\"fields\": {\"a\": [{\"b\": \"\xed\xa0\x80\"}]}}", http.StatusBadRequest, "fields.a[0].b"},
		{"invalid UTF-8 in a name", "{\"fields\": {\"k\xffey\": 1}}", http.StatusBadRequest, "fields.k\ufffdey"},
		{"half a surrogate pair escaped", `{"name": "\ud800"}`, http.StatusBadRequest, "name"},
		{"invalid UTF-8 after a wrong type", "{\"threshold\": \"x\", \"name\": \"\xff\"}", http.StatusBadRequest, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ruleRequest
			w := httptest.NewRecorder()
			decodeHandler(&got)(w, httptest.NewRequest(http.MethodPost, "/v1/rules", strings.NewReader(tt.body)))
			res := w.Result()
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
			}
			p := readProblem(t, res)
			if p.Detail == "" {
				t.Error("the problem does not say what is wrong")
			}
			var fields []string
			for _, fe := range p.Errors {
				fields = append(fields, fe.Field)
			}
			if tt.wantField == "" && len(fields) != 0 {
				t.Errorf("problem points at %v, want no field", fields)
			}
			if tt.wantField != "" && (len(fields) != 1 || fields[0] != tt.wantField) {
				t.Errorf("problem points at %v, want [%s]", fields, tt.wantField)
			}
		})
	}
}

func TestDecodeJSONAcceptsValidBodies(t *testing.T) {
	tests := []struct {
		name string
		body string
		want ruleRequest
	}{
		{"plain", `{"name": "low", "threshold": 0.2}`, ruleRequest{Name: "low", Threshold: 0.2}},
		{"trailing newline", "{\"name\": \"low\"}\n", ruleRequest{Name: "low"}},
		{"a long above 2^53 in a free-form object stays exact", `{"fields": {"bytes": 9007199254740993}}`,
			ruleRequest{Fields: map[string]any{"bytes": json.Number("9007199254740993")}}},
		{"UTF-8 text and escapes", `{"name": "café \ud83d\ude00 😀", "fields": {"é": "\u00e9"}}`,
			ruleRequest{Name: "café 😀 😀", Fields: map[string]any{"é": "é"}}},
		{"exactly MaxBody bytes", `{"name": "` + strings.Repeat("a", httpapi.MaxBody-len(`{"name": ""}`)) + `"}`,
			ruleRequest{Name: strings.Repeat("a", httpapi.MaxBody-len(`{"name": ""}`))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ruleRequest
			w := httptest.NewRecorder()
			decodeHandler(&got)(w, httptest.NewRequest(http.MethodPost, "/v1/rules", strings.NewReader(tt.body)))
			if w.Code != http.StatusNoContent {
				t.Fatalf("status = %d, body %s", w.Code, w.Body)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnmarshalRefusesInvalidUTF8NamingTheField(t *testing.T) {
	var got ruleRequest
	err := httpapi.Unmarshal([]byte("{\"on\": {\"entityTypes\": [\"\xff\"]}}"), &got)
	var p *httpapi.Problem
	if !errors.As(err, &p) || p.Status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "on.entityTypes[0]" {
		t.Fatalf("Unmarshal = %#v, want a 400 problem naming on.entityTypes[0]", err)
	}
	if got.On.EntityTypes != nil {
		t.Errorf("Unmarshal filled %q from a refused body", got.On.EntityTypes)
	}
}

func TestWriteErrorHidesInternalErrors(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/rules", nil)
	httpapi.WriteError(w, r, slog.New(slog.DiscardHandler), io.ErrUnexpectedEOF)
	res := w.Result()
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", res.StatusCode)
	}
	if p := readProblem(t, res); strings.Contains(p.Detail, io.ErrUnexpectedEOF.Error()) {
		t.Errorf("the problem shows the internal error: %q", p.Detail)
	}
}
