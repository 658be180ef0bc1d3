// Command receiver is a webhook endpoint for trying Herald locally: it
// prints every request it gets, headers and body, and answers 204.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sort"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	flag.Parse()
	h := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Printf("%s %s %s\n", time.Now().Format(time.RFC3339), r.Method, r.URL.Path)
		for _, k := range names {
			fmt.Printf("  %s: %s\n", k, r.Header.Get(k))
		}
		fmt.Printf("  %s\n\n", body)
		w.WriteHeader(http.StatusNoContent)
	}
	fmt.Fprintf(os.Stderr, "receiver listening on http://%s\n", *addr)
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(h), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
