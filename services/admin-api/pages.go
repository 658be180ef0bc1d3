package adminapi

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldhq/herald/pkg/httpapi"
)

// Page sizes of every list.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// page is what a list request asks for: how many items at most, and after
// which key (none for the first page).
type page struct {
	limit int
	after string
	list  string // the route the cursor belongs to
}

// parsePage reads ?limit= and ?cursor= (or its alias ?pageToken=). A cursor
// is opaque to clients; it holds the route it came from, so that one list's
// cursor is refused by another.
func parsePage(r *http.Request) (page, error) {
	p := page{limit: defaultPageSize, list: r.Pattern}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return p, httpapi.NewProblem(http.StatusBadRequest, "the query string is not valid")
	}
	bad := func(field, msg string) error {
		return httpapi.NewProblem(http.StatusBadRequest, "the request is not valid", httpapi.FieldError{Field: field, Message: msg})
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return p, bad("limit", "a whole number from 1 to "+strconv.Itoa(maxPageSize))
		}
		p.limit = n
	}
	c := q.Get("cursor")
	if c == "" {
		c = q.Get("pageToken")
	}
	if c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		list, after, ok := strings.Cut(string(raw), "\n")
		if err != nil || !ok || list != p.list || after == "" {
			return p, bad("cursor", "not a cursor this list gave")
		}
		p.after = after
	}
	return p, nil
}

func (p page) cursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(p.list + "\n" + key))
}

// paginate returns the items of p: those after p's cursor, at most
// p.limit of them. items are in list order and key gives each a string
// that grows along the list. The cursor of the next page is "" when this
// is the last.
func paginate[T any](items []T, key func(int, T) string, p page) ([]T, string) {
	start := 0
	if p.after != "" {
		start = sort.Search(len(items), func(i int) bool { return key(i, items[i]) > p.after })
	}
	end := min(start+p.limit, len(items))
	if end == len(items) {
		return items[start:end], ""
	}
	return items[start:end], p.cursor(key(end-1, items[end-1]))
}

// position is the key of lists whose order does not change: an item's
// place in it.
func position[T any](i int, _ T) string { return strconv.FormatInt(int64(i)+1e12, 10) }

// writePage writes a page of a list as {"items": […], "nextCursor": "…"},
// and a Link header to the next page, which exists when nextCursor is set.
func writePage[T any](w http.ResponseWriter, r *http.Request, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	body := map[string]any{"items": items}
	if next != "" {
		body["nextCursor"] = next
		q := r.URL.Query()
		q.Del("pageToken")
		q.Set("cursor", next)
		u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
		w.Header().Set("Link", "<"+u.String()+`>; rel="next"`)
	}
	httpapi.WriteJSON(w, http.StatusOK, body)
}
