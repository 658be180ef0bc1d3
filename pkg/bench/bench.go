// Package bench holds what Herald's bench commands share, so that each
// sets up and measures the same way: the broker, topics and registry a
// run uses, with its configuration and records seeded (Broker), the wall
// and processor time a stretch of a run takes (Start, Window, Span), how
// far a consumer group has committed a topic (Committed, AwaitCommitted,
// Consume), wrk's requests per second (Wrk), a CPU profile of a stretch
// (Profile), and the figures a command writes for make bench to gather
// (WriteJSON).
//
// A figure that is a rate is measured over a window that leaves out
// start-up (joining a group, catching up with configuration): from the
// moment a tenth of the work is done to the moment all of it is.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Window is a stretch of a run being measured.
type Window struct {
	start time.Time
	cpu   time.Duration
}

// Start starts a window now.
func Start() Window { return Window{start: time.Now(), cpu: CPU()} }

// Stop ends the window and returns what it took.
func (w Window) Stop() Span {
	return Span{Wall: time.Since(w.start), CPU: CPU() - w.cpu}
}

// Span is what a window took: wall time, and the processor time (user and
// system) this process spent in it.
type Span struct {
	Wall, CPU time.Duration
}

// Rate returns n per second of wall time.
func (s Span) Rate(n int64) float64 { return float64(n) / s.Wall.Seconds() }

// Add returns the two spans' wall and processor times together.
func (s Span) Add(t Span) Span { return Span{Wall: s.Wall + t.Wall, CPU: s.CPU + t.CPU} }

// CPUPer1000 returns the processor seconds every 1,000 of n cost.
func (s Span) CPUPer1000(n int64) float64 { return s.CPU.Seconds() * 1000 / float64(n) }

// CPU returns the processor time this process has used, user and system.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Committed returns how many records of topic group has committed: the
// sum of its committed offsets, which counts records when the topic holds
// no transaction markers.
func Committed(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	if err := offs.Error(); err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

// AwaitCommitted waits until group has committed total records of topic,
// and returns the window from the moment it had committed a tenth of them,
// with the number of records committed within it. It gives up when ctx
// ends or stopped yields (the consumer stopped).
func AwaitCommitted(ctx context.Context, adm *kadm.Client, group, topic string, total int64, stopped <-chan error) (Span, int64, error) {
	var (
		w     Window
		from  int64 = -1
		every       = 10 * time.Millisecond
	)
	for {
		select {
		case <-ctx.Done():
			return Span{}, 0, ctx.Err()
		case err := <-stopped:
			return Span{}, 0, fmt.Errorf("the consumer stopped: %v", err)
		case <-time.After(every):
		}
		n, err := Committed(ctx, adm, group, topic)
		if err != nil {
			continue
		}
		if from < 0 && n >= total/10 {
			w, from = Start(), n
		}
		if from >= 0 && n >= total {
			return w.Stop(), n - from, nil
		}
	}
}

// Consume runs consumer until group has committed every one of total
// records of topic, then stops it and waits for it to return. It returns
// the window from a tenth committed to all, the records committed in it,
// and the whole run from the consumer's start to all committed; with
// profile, a CPU profile of the run is written there.
func Consume(ctx context.Context, adm *kadm.Client, group, topic string, total int64, profile string, consumer func(context.Context) error) (Span, int64, Span, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := Start()
	stopped := make(chan error, 1)
	go func() { stopped <- consumer(ctx) }()
	stopProfile, err := Profile(profile)
	if err != nil {
		return Span{}, 0, Span{}, err
	}
	span, done, err := AwaitCommitted(ctx, adm, group, topic, total, stopped)
	all := start.Stop()
	stopProfile()
	if err != nil {
		return Span{}, 0, Span{}, fmt.Errorf("%s: %w", group, err)
	}
	cancel()
	<-stopped
	return span, done, all, nil
}

// WrkOptions say what wrk runs.
type WrkOptions struct {
	URL string
	// Lua is wrk's script: the request it sends (method, body, headers).
	Lua         string
	Connections int
	Duration    time.Duration
}

// Wrk runs wrk with two threads and returns its requests per second and
// the share of its answers that were not 2xx or 3xx.
func Wrk(ctx context.Context, o WrkOptions) (rate, failed float64, err error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return 0, 0, errors.New("wrk is not installed (make bench installs it)")
	}
	dir, err := os.MkdirTemp("", "herald-wrk")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "request.lua")
	if err := os.WriteFile(script, []byte(o.Lua), 0o600); err != nil {
		return 0, 0, err
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t", "2", "-c", strconv.Itoa(o.Connections), "-d", o.Duration.String(), "-s", script, o.URL).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("wrk printed no Requests/sec:\n%s", out)
	}
	rate, err = strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return 0, 0, err
	}
	total := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out)
	bad := regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`).FindSubmatch(out)
	if total != nil && bad != nil {
		t, _ := strconv.ParseFloat(string(total[1]), 64)
		b, _ := strconv.ParseFloat(string(bad[1]), 64)
		if t > 0 {
			failed = b / t
		}
	}
	return rate, failed, nil
}

// PostLua returns a wrk script that POSTs body with headers.
func PostLua(body []byte, headers map[string]string) string {
	s := fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = %s\n", luaString(body))
	for k, v := range headers {
		s += fmt.Sprintf("wrk.headers[%s] = %s\n", luaString([]byte(k)), luaString([]byte(v)))
	}
	return s
}

// luaString quotes b as a Lua string literal.
func luaString(b []byte) string {
	out := []byte{'"'}
	for _, c := range b {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20 || c >= 0x7f:
			out = append(out, fmt.Sprintf("\\%03d", c)...)
		default:
			out = append(out, c)
		}
	}
	return string(append(out, '"'))
}

// Profile starts a CPU profile written to path and returns what stops it;
// an empty path profiles nothing.
func Profile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// WriteJSON writes v as indented JSON to path; an empty path writes
// nothing.
func WriteJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
