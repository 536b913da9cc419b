package control

import (
	"errors"
	"net/http"
	"strconv"
)

// Pagination of list calls: ?limit=N (1-1000, default 1000) and
// ?page_token=T from the previous answer's next_page_token. Items are
// listed in a stable order; the token is the key of the last item sent.

const maxPage = 1000

// paginate returns the page of items (sorted by key) the request asks for
// and the token of the next page ("" on the last).
func paginate[T any](r *http.Request, items []T, key func(T) string) ([]T, string, error) {
	q := r.URL.Query()
	limit := maxPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return nil, "", BadRequest(errors.New("limit: want 1 to 1000"))
		}
		limit = n
	}
	start := 0
	if tok := q.Get("page_token"); tok != "" {
		start = len(items)
		for i, it := range items {
			if key(it) > tok {
				start = i
				break
			}
		}
	}
	end := min(start+limit, len(items))
	page := items[start:end]
	next := ""
	if end < len(items) && len(page) > 0 {
		next = key(page[len(page)-1])
	}
	return page, next, nil
}
