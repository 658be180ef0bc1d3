package deploytest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, …
	Args string
	Line int
}

// stage is one FROM and the instructions under it.
type stage struct {
	From         string // the base image
	Name         string // after AS
	Instructions []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions, as the
// Dockerfile reference describes them: comments and blank lines dropped,
// lines ending in a backslash continued.
func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages []stage
		cur    strings.Builder
		start  int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		cur.Reset()
		if in.Cmd == "FROM" {
			fields := strings.Fields(in.Args)
			st := stage{From: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				st.Name = fields[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd == "ARG" {
				continue // before the first FROM
			}
			t.Fatalf("%s:%d: %s before FROM", path, in.Line, in.Cmd)
		}
		stages[len(stages)-1].Instructions = append(stages[len(stages)-1].Instructions, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s: ends inside a continued line", path)
	}
	return stages
}

func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm reports whether args is an instruction's exec (JSON) form.
func execForm(args string) bool { return strings.HasPrefix(strings.TrimSpace(args), "[") }

func dockerfile(t *testing.T) []stage {
	t.Helper()
	stages := parseDockerfile(t, filepath.Join(root, "deploy/Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want a build stage and a final one", len(stages))
	}
	return stages
}

func TestDockerfileBuildsAStaticBinaryOfTheService(t *testing.T) {
	build := dockerfile(t)[0]
	if !slices.ContainsFunc(build.all("ARG"), func(in instruction) bool { return in.Args == "SERVICE" }) {
		t.Error("the build stage does not declare ARG SERVICE")
	}
	runs := build.all("RUN")
	if !slices.ContainsFunc(runs, func(in instruction) bool {
		return strings.Contains(in.Args, "go build") && strings.Contains(in.Args, "${SERVICE}")
	}) {
		t.Error("no RUN of the build stage builds ./cmd/${SERVICE}")
	}
	env := strings.Join(slices.Collect(func(yield func(string) bool) {
		for _, in := range build.all("ENV") {
			if !yield(in.Args) {
				return
			}
		}
	}), " ")
	for _, want := range []string{"CGO_ENABLED=0", "GOWORK=off"} {
		if !strings.Contains(" "+env+" ", " "+want+" ") {
			t.Errorf("the build stage's ENV %q lacks %s", env, want)
		}
	}
	// The Go of the image is the Go of go.work.
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(work)
	if goLine == nil {
		t.Fatal("go.work has no go line")
	}
	image, tag, _ := strings.Cut(build.From, ":")
	if image != "golang" && image != "docker.io/library/golang" || !strings.HasPrefix(tag, string(goLine[1])) {
		t.Errorf("the build stage is FROM %s, want golang:%s…, the Go of go.work", build.From, goLine[1])
	}
}

func TestDockerfileFinalImageRunsAsNonRootWithoutAShell(t *testing.T) {
	stages := dockerfile(t)
	final := stages[len(stages)-1]
	if !strings.Contains(final.From, "distroless/static") && final.From != "scratch" {
		t.Errorf("the final stage is FROM %s, want distroless static or scratch", final.From)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Fatal("the final stage sets no USER: it would run as root")
	}
	uid, _, _ := strings.Cut(users[len(users)-1].Args, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("the final USER is %q, want a numeric non-zero uid (runAsNonRoot can check only a number)", users[len(users)-1].Args)
	}
	for _, in := range final.all("RUN") {
		if !execForm(in.Args) {
			t.Errorf("line %d: shell-form RUN in the final stage, whose image has no shell", in.Line)
		}
	}
	for _, cmd := range []string{"ENTRYPOINT", "CMD"} {
		for _, in := range final.all(cmd) {
			if !execForm(in.Args) {
				t.Errorf("line %d: %s in shell form, whose image has no shell", in.Line, cmd)
			}
		}
	}
	copies := strings.Join(slices.Collect(func(yield func(string) bool) {
		for _, in := range final.all("COPY") {
			if !yield(in.Args) {
				return
			}
		}
	}), " ")
	if !strings.Contains(copies, "herald-healthcheck") || !strings.Contains(copies, filepath.Dir(healthcheckBinary)) {
		t.Errorf("the final stage does not install herald-healthcheck in %s, which the health checks call: COPY %s", filepath.Dir(healthcheckBinary), copies)
	}
}

// imageCommands returns every command an image is built for: the Makefile's
// images and the compose services built from deploy/Dockerfile, as module
// directory and package directory.
func imageCommands(t *testing.T) map[string][2]string {
	t.Helper()
	cmds := map[string][2]string{}
	add := func(service, cmd string) {
		module := filepath.Join("services", service)
		if _, err := os.Stat(filepath.Join(root, module)); err != nil {
			module = filepath.Join("deploy", service)
		}
		if cmd == "" {
			cmd = service
		}
		cmds[service+"/"+cmd] = [2]string{module, filepath.Join(module, "cmd", cmd)}
	}
	for _, s := range loadCompose(t).Services {
		if s.Build != nil && filepath.ToSlash(s.Build.Dockerfile) == "deploy/Dockerfile" {
			var service, cmd string
			if v := s.Build.Args["SERVICE"]; v != nil {
				service = *v
			}
			if v := s.Build.Args["CMD"]; v != nil {
				cmd = *v
			}
			add(service, cmd)
		}
	}
	out, err := exec.Command("make", "-s", "-C", root, "--eval=print-images: ; @echo $(IMAGES)", "print-images").Output()
	if err != nil {
		t.Fatalf("make print-images: %v", err)
	}
	for _, name := range strings.Fields(string(out)) {
		add(name, "")
	}
	for _, name := range heraldServices(t) {
		if _, ok := cmds[name+"/"+name]; !ok {
			t.Errorf("no image is built for %s: neither the Makefile's IMAGES nor docker-compose.yml name it", name)
		}
	}
	return cmds
}

func TestEveryImageCommandExists(t *testing.T) {
	for name, dirs := range imageCommands(t) {
		matches, _ := filepath.Glob(filepath.Join(root, dirs[1], "*.go"))
		if len(matches) == 0 {
			t.Errorf("image %s: %s has no Go files to build", name, dirs[1])
			continue
		}
		if _, err := os.Stat(filepath.Join(root, dirs[0], "go.mod")); err != nil {
			t.Errorf("image %s: %s is no module, which GOWORK=off needs", name, dirs[0])
		}
	}
}

// TestEveryImageBuildsWithoutTheWorkspace resolves each image's command as
// the Dockerfile builds it, with GOWORK=off: a module whose go.mod or
// go.sum misses something its packages (or pkg's) import fails here
// rather than in `make images`.
func TestEveryImageBuildsWithoutTheWorkspace(t *testing.T) {
	if testing.Short() {
		t.Skip("resolves every image's dependencies with the go command")
	}
	for name, dirs := range imageCommands(t) {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Error}}{{.Error}}{{end}}", "./"+filepath.Base(dirs[1]))
		cmd.Dir = filepath.Join(root, dirs[0], "cmd")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("image %s: GOWORK=off go list -deps in %s: %v\n%s", name, dirs[0], err, out)
		}
		t.Logf("image %s resolved in %v", name, time.Since(start).Round(time.Millisecond))
	}
}
