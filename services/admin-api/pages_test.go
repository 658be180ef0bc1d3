package adminapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// TestEveryKindListIsPaginated walks each kind's list a page at a time:
// every item once, in id order, the next page linked until the last.
func TestEveryKindListIsPaginated(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	made := map[string][]string{}
	for i := range 5 {
		d := s.destination(key, fmt.Sprintf("d%d", i))
		made["destinations"] = append(made["destinations"], d)
		made["rules"] = append(made["rules"], s.rule(key, fmt.Sprintf("r%d", i), d))
		k := s.want(http.StatusCreated, "POST", "/v1/api-keys", key, `{"name":"k","scopes":["config:read"]}`)
		made["api-keys"] = append(made["api-keys"], k.str("id"))
	}
	first := s.want(http.StatusOK, "GET", "/v1/api-keys?limit=1", key, "").items()[0]["id"].(string)
	made["api-keys"] = append(made["api-keys"], first) // the tenant's initial key
	for plural, ids := range made {
		t.Run(plural, func(t *testing.T) {
			want := slices.Sorted(slices.Values(ids))
			want = slices.Compact(want)
			var got []string
			path := "/v1/" + plural + "?limit=2"
			for pages := 0; path != ""; pages++ {
				if pages > len(want) {
					t.Fatal("more pages than items")
				}
				r := s.want(http.StatusOK, "GET", path, key, "")
				if n := len(r.items()); n == 0 || n > 2 {
					t.Fatalf("page %d has %d items", pages, n)
				}
				for _, it := range r.items() {
					got = append(got, it["id"].(string))
				}
				path = nextLink(t, r)
			}
			if !slices.Equal(got, want) {
				t.Errorf("ids over every page = %v, want %v", got, want)
			}
			all := s.want(http.StatusOK, "GET", "/v1/"+plural, key, "")
			if len(all.items()) != len(want) || all.str("nextCursor") != "" {
				t.Errorf("one default page holds %d items, next %q; want all %d", len(all.items()), all.str("nextCursor"), len(want))
			}
		})
	}
}

func TestPaginationRefusesBadParameters(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	s.destination(key, "a")
	s.destination(key, "b")
	ruleCursor := func() string {
		s.rule(key, "r1", "")
		s.rule(key, "r2", "")
		return s.want(http.StatusOK, "GET", "/v1/rules?limit=1", key, "").str("nextCursor")
	}()
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "cursor=%%%", "cursor=bm90IGEgY3Vyc29y", "cursor=" + ruleCursor} {
		s.want(http.StatusBadRequest, "GET", "/v1/destinations?"+q, key, "")
	}
	// pageToken is another name for cursor.
	next := s.want(http.StatusOK, "GET", "/v1/destinations?limit=1", key, "").str("nextCursor")
	page := s.want(http.StatusOK, "GET", "/v1/destinations?limit=1&pageToken="+next, key, "")
	if len(page.items()) != 1 || page.items()[0]["name"] != "b" {
		t.Errorf("second page by pageToken = %s", page.raw)
	}
}

// TestUpdatesTakeIfMatch pins If-Match on replace and delete: the version
// read succeeds once, a stale one answers 412 and changes nothing.
func TestUpdatesTakeIfMatch(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	id := s.destination(key, "ops")
	path := "/v1/destinations/" + id
	body := func(name string) string {
		return `{"type":"webhook","name":"` + name + `","webhook":{"url":"https://hooks.example.com/x"}}`
	}
	etag := s.want(http.StatusOK, "GET", path, key, "").header.Get("ETag")
	if etag != `"1"` {
		t.Fatalf("ETag = %s", etag)
	}
	r := s.want(http.StatusOK, "PUT", path, key, body("renamed"), "If-Match", etag)
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("ETag after PUT = %s", r.header.Get("ETag"))
	}
	s.want(http.StatusPreconditionFailed, "PUT", path, key, body("stale"), "If-Match", etag)
	s.want(http.StatusPreconditionFailed, "DELETE", path, key, "", "If-Match", etag)
	s.want(http.StatusBadRequest, "PUT", path, key, body("bad"), "If-Match", "yesterday")
	if got := s.want(http.StatusOK, "GET", path, key, "").str("name"); got != "renamed" {
		t.Errorf("name = %q after refused updates", got)
	}
	s.want(http.StatusOK, "PUT", path, key, body("any"), "If-Match", "*")
	s.want(http.StatusPreconditionFailed, "PUT", path, key, body("weak"), "If-Match", `W/"3"`)
	s.want(http.StatusOK, "PUT", path, key, body("strong"), "If-Match", `"3"`)
	s.want(http.StatusNoContent, "DELETE", path, key, "", "If-Match", `"4"`)
	s.want(http.StatusNotFound, "PUT", path, key, body("gone"), "If-Match", `"4"`)
}

// TestConcurrentUpdatesWithOneVersionOneWins sends the same If-Match from
// many writers at once: one update is stored, the rest answer 412.
func TestConcurrentUpdatesWithOneVersionOneWins(t *testing.T) {
	s := startAdmin(t)
	key := s.tenant("acme")
	id := s.rule(key, "r", "")
	const writers = 8
	statuses := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			statuses[i] = s.do("PUT", "/v1/rules/"+id, key, ruleBody(fmt.Sprintf("w%d", i), ""), "If-Match", `"1"`).status
		})
	}
	wg.Wait()
	slices.Sort(statuses)
	want := append([]int{http.StatusOK}, slices.Repeat([]int{http.StatusPreconditionFailed}, writers-1)...)
	if !slices.Equal(statuses, want) {
		t.Errorf("statuses = %v, want one 200 and the rest 412", statuses)
	}
	if v := s.want(http.StatusOK, "GET", "/v1/rules/"+id, key, "").header.Get("ETag"); v != `"2"` {
		t.Errorf("version after the race = %s, want 2", v)
	}
}
