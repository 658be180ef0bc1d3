package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain runs main when the test binary is started as the command, so
// that exit codes are tested as a container runtime sees them.
func TestMain(m *testing.M) {
	if os.Getenv("HERALD_HEALTHCHECK_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestURL(t *testing.T) {
	tests := []struct {
		arg, addr, want, wantErr string
	}{
		{arg: "/readyz", addr: "", want: "http://127.0.0.1:8080/readyz"},
		{arg: "/readyz", addr: ":9100", want: "http://127.0.0.1:9100/readyz"},
		{arg: "/healthz", addr: "0.0.0.0:8081", want: "http://127.0.0.1:8081/healthz"},
		{arg: "/healthz", addr: "[::]:8081", want: "http://127.0.0.1:8081/healthz"},
		{arg: "/healthz", addr: "10.1.2.3:8081", want: "http://10.1.2.3:8081/healthz"},
		{arg: "http://admin-api:8080/readyz", addr: ":9", want: "http://admin-api:8080/readyz"},
		{arg: "readyz", wantErr: "neither a path nor a URL"},
		{arg: "/readyz", addr: "8080", wantErr: "HERALD_HTTP_ADDR"},
	}
	for _, tt := range tests {
		got, err := url(tt.arg, tt.addr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("url(%q, %q) error = %v, want one with %q", tt.arg, tt.addr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("url(%q, %q) = %q, %v; want %q", tt.arg, tt.addr, got, err, tt.want)
		}
	}
}

func TestExitCodeFollowsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(http.StatusOK)
		case "/readyz":
			http.Error(w, `{"status":"unavailable","reason":"config"}`, http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()

	tests := []struct {
		name, addr string
		args       []string
		code       int
		stderr     string
	}{
		{name: "healthy", addr: addr, args: []string{"/healthz"}, code: 0},
		{name: "not ready", addr: addr, args: []string{"/readyz"}, code: 1, stderr: "503"},
		{name: "unknown route", addr: addr, args: []string{"/nope"}, code: 1, stderr: "404"},
		{name: "nothing listening", addr: closedAddr, args: []string{"/healthz"}, code: 1, stderr: "connection refused"},
		{name: "full URL", addr: closedAddr, args: []string{srv.URL + "/healthz"}, code: 0},
		{name: "no argument", addr: addr, code: 2, stderr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), "HERALD_HEALTHCHECK_RUN_MAIN=1", "HERALD_HTTP_ADDR="+tt.addr)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			_ = cmd.Run()
			if ctx.Err() != nil {
				t.Fatal("herald-healthcheck did not exit")
			}
			if got := cmd.ProcessState.ExitCode(); got != tt.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", got, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderr)
			}
		})
	}
}
