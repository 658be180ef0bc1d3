package httpapi

import (
	"net/http"
	"strconv"
	"time"
)

// WriteUnavailable writes a 503 problem with detail and a Retry-After
// header of retryAfter in whole seconds, at least one.
func WriteUnavailable(w http.ResponseWriter, retryAfter time.Duration, detail string) {
	secs := max(1, int64((retryAfter+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	WriteProblem(w, NewProblem(http.StatusServiceUnavailable, detail))
}
