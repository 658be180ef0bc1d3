package servicetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Build compiles the command at pkg, a path relative to the test's
// package such as "./cmd/email-sender", into the test's temporary
// directory and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// Process is a service running as a process of its own, as in
// production, which a test can kill and start again; whatever runs when
// the test ends is killed.
type Process struct {
	t   testing.TB
	bin string
	env []string
	cmd *exec.Cmd
}

// StartProcess starts bin with env added to the test's environment, its
// standard error going to the test's.
func StartProcess(t testing.TB, bin string, env []string) *Process {
	t.Helper()
	p := &Process{t: t, bin: bin, env: append(os.Environ(), env...)}
	t.Cleanup(func() {
		if p.cmd != nil && p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	p.Start()
	return p
}

// Start starts the process again after Kill.
func (p *Process) Start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin)
	p.cmd.Env = p.env
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

// Stop asks the process to end with SIGTERM, as a rolling update does,
// and returns how it ended.
func (p *Process) Stop() error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	return p.cmd.Wait()
}

// Kill ends the process with SIGKILL, as a crash or an eviction does, and
// waits for it.
func (p *Process) Kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatal(err)
	}
	_ = p.cmd.Wait()
}
