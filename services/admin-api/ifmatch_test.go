package adminapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIfMatchComparesEntityTagsStrongly pins If-Match (RFC 9110) on every
// kind of update and delete: an entity-tag other than the current one,
// weak tags included, answers 412 and changes nothing; only a header
// that is not a list of entity-tags answers 400; "*" and a list holding
// the current tag go through.
func TestIfMatchComparesEntityTagsStrongly(t *testing.T) {
	t.Parallel()
	s := startAdmin(t)
	key := s.tenant("acme")
	s.tenant("beta")
	dest := "/v1/destinations/" + s.destination(key, "ops")
	smtp := "/v1/smtp-profiles/" + s.want(http.StatusCreated, "POST", "/v1/smtp-profiles", key,
		`{"name":"a","host":"smtp.example.com","fromAddress":"billing@example.com","username":"u","password":"pw"}`).str("id")
	contact := "/v1/accounts/acct-1/contacts/billing"
	contactBody := `{"name":"Billing","email":"billing@example.com"}`
	// If-Match asks that the resource exist: "*" or a tag never creates.
	s.want(http.StatusPreconditionFailed, "PUT", contact, key, contactBody, "If-Match", "*")
	s.want(http.StatusPreconditionFailed, "PUT", contact, key, contactBody, "If-Match", `"1"`)
	s.want(http.StatusCreated, "PUT", contact, key, contactBody)

	routes := []struct {
		name, method, path, auth, body string
	}{
		{"replace a destination", "PUT", dest, key, `{"type":"webhook","name":"ops","webhook":{"url":"https://hooks.example.com/x"}}`},
		{"patch a tenant", "PATCH", "/v1/tenants/beta", operatorToken, `{"name":"Beta"}`},
		{"replace an SMTP profile", "PUT", smtp, key, `{"name":"a","host":"smtp2.example.com","fromAddress":"billing@example.com","username":"u"}`},
		{"replace a contact", "PUT", contact, key, contactBody},
		{"delete a destination", "DELETE", dest, key, ""},
		{"delete a tenant", "DELETE", "/v1/tenants/beta", operatorToken, ""},
		{"delete an SMTP profile", "DELETE", smtp, key, ""},
		{"delete a contact", "DELETE", contact, key, ""},
	}
	// refused lists If-Match values given the current version v and the
	// status each answers.
	refused := func(v string) []struct {
		ifMatch string
		status  int
	} {
		return []struct {
			ifMatch string
			status  int
		}{
			{`"stale-0"`, http.StatusPreconditionFailed},
			{`W/"` + v + `"`, http.StatusPreconditionFailed},
			{`W/"` + v + `", W/"99"`, http.StatusPreconditionFailed},
			{`"0` + v + `"`, http.StatusPreconditionFailed},
			{`"0"`, http.StatusPreconditionFailed},
			{`"a,b", "stale-1"`, http.StatusPreconditionFailed},
			{v, http.StatusBadRequest},
			{`yesterday`, http.StatusBadRequest},
			{`"` + v, http.StatusBadRequest},
			{`"` + v + `" "2"`, http.StatusBadRequest},
			{`*, "` + v + `"`, http.StatusBadRequest},
			{`W/` + v, http.StatusBadRequest},
		}
	}
	etag := func(path, auth string) string {
		return s.want(http.StatusOK, "GET", path, auth, "").header.Get("ETag")
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			before := etag(rt.path, rt.auth)
			v := strings.Trim(before, `"`)
			for _, tc := range refused(v) {
				if r := s.do(rt.method, rt.path, rt.auth, rt.body, "If-Match", tc.ifMatch); r.status != tc.status {
					t.Errorf("If-Match: %s answered %d %s, want %d", tc.ifMatch, r.status, r.raw, tc.status)
				}
			}
			if got := etag(rt.path, rt.auth); got != before {
				t.Fatalf("ETag after refused requests = %s, want %s", got, before)
			}
			want := http.StatusOK
			if rt.method == "DELETE" {
				want = http.StatusNoContent
			}
			// A list matches when any strong tag in it is the current one.
			s.want(want, rt.method, rt.path, rt.auth, rt.body, "If-Match", `"stale-0", W/"`+v+`" ,, "999999", "`+v+`"`)
			if rt.method == "DELETE" {
				s.want(http.StatusNotFound, "GET", rt.path, rt.auth, "")
				return
			}
			if got := etag(rt.path, rt.auth); got == before {
				t.Errorf("ETag after the update = %s, unchanged", got)
			}
			s.want(http.StatusOK, rt.method, rt.path, rt.auth, rt.body, "If-Match", "*")
		})
	}
}
