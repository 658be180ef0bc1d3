// Command herald-healthcheck asks a Herald service in the same container
// whether it is healthy, for container health checks in images that have no
// shell or curl. It GETs the path given as its argument (such as /readyz)
// from the address in HERALD_HTTP_ADDR, the one the service listens on, and
// exits 0 on a 2xx answer and 1 otherwise.
//
//	herald-healthcheck /readyz
//	herald-healthcheck http://127.0.0.1:8080/healthz
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// defaultAddr is the services' own default HERALD_HTTP_ADDR.
const defaultAddr = ":8080"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: herald-healthcheck /path | http://host:port/path")
		os.Exit(2)
	}
	target, err := url(os.Args[1], os.Getenv("HERALD_HTTP_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-healthcheck:", err)
		os.Exit(2)
	}
	if err := check(target, 5*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "herald-healthcheck:", err)
		os.Exit(1)
	}
}

// url returns the URL to ask: arg itself when it is one, else arg as a path
// on the service's listen address, with an unspecified host read as
// loopback.
func url(arg, addr string) (string, error) {
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		return arg, nil
	}
	if !strings.HasPrefix(arg, "/") {
		return "", fmt.Errorf("%q is neither a path nor a URL", arg)
	}
	if addr == "" {
		addr = defaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("HERALD_HTTP_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + arg, nil
}

// check GETs target and returns an error unless the answer is 2xx.
func check(target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the service is in this container.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s", target, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
