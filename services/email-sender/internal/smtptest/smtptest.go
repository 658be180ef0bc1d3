// Package smtptest runs the email sender's test SMTP server (aiosmtpd, from
// testdata/smtpd.py, under the test peers' Python) and reads what it
// records: connections, AUTH attempts, MAIL and RCPT commands, and each
// accepted message with its raw bytes. Tests and the email bench share it.
// NewCA makes the certificate authority and server certificate a TLS test
// needs.
package smtptest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Config is the server's configuration (see testdata/smtpd.py).
type Config struct {
	Cert            string   `json:"cert,omitempty"`
	Key             string   `json:"key,omitempty"`
	StartTLS        bool     `json:"starttls,omitempty"`
	Implicit        bool     `json:"implicit,omitempty"`
	RequireStartTLS bool     `json:"require_starttls,omitempty"`
	Auth            *Login   `json:"auth,omitempty"`
	AuthExclude     []string `json:"auth_exclude,omitempty"`
	// AuthPlaintext offers AUTH before TLS too.
	AuthPlaintext bool   `json:"-"`
	Rules         []Rule `json:"rules,omitempty"`
}

// Login is the one user and password the server accepts.
type Login struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Rule makes the server answer a command with Reply, or drop the
// connection, instead of accepting it.
type Rule struct {
	Cmd   string `json:"cmd"` // MAIL, RCPT, DATA or RSET
	Addr  string `json:"addr,omitempty"`
	Reply string `json:"reply,omitempty"`
	Drop  bool   `json:"drop,omitempty"`
	// Delay is how long the server waits before it answers, in seconds.
	Delay float64 `json:"delay,omitempty"`
	// Times is how many times the rule applies; 0 means always.
	Times int `json:"times,omitempty"`
}

// Event is one thing the server recorded.
type Event struct {
	Event     string   `json:"event"` // connect, disconnect, auth, mail, rcpt, message
	MailFrom  string   `json:"mail_from"`
	RcptTos   []string `json:"rcpt_tos"`
	Address   string   `json:"address"`
	Data      []byte   `json:"data"` // the message as received
	TLS       bool     `json:"tls"`
	Login     string   `json:"login"`
	Mechanism string   `json:"mechanism"`
	Success   bool     `json:"success"`
	Port      int      `json:"port"`
	N         int      `json:"n"`
}

// Server is a running test SMTP server.
type Server struct {
	// Port is the port it listens on, on 127.0.0.1.
	Port int

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	exited chan struct{}

	mu      sync.Mutex
	events  []Event
	acks    chan Event
	changed chan struct{}
}

// Start runs script (testdata/smtpd.py) with python and waits until it
// listens.
func Start(python, script string, c Config) (*Server, error) {
	raw := map[string]any{}
	b, _ := json.Marshal(c)
	_ = json.Unmarshal(b, &raw)
	raw["auth_require_tls"] = !c.AuthPlaintext
	arg, _ := json.Marshal(raw)
	s := &Server{cmd: exec.Command(python, script, string(arg)), exited: make(chan struct{}), acks: make(chan Event, 1), changed: make(chan struct{}, 1)}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the SMTP server: %w", err)
	}
	listening := make(chan int, 1)
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			switch e.Event {
			case "listening":
				listening <- e.Port
			case "rules", "kicked":
				s.acks <- e
			default:
				s.mu.Lock()
				s.events = append(s.events, e)
				s.mu.Unlock()
				select {
				case s.changed <- struct{}{}:
				default:
				}
			}
		}
		_ = s.cmd.Wait()
	}()
	select {
	case s.Port = <-listening:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("the SMTP server exited: %s", s.Stderr())
	case <-time.After(30 * time.Second):
		s.Close()
		return nil, fmt.Errorf("the SMTP server did not listen within 30s: %s", s.Stderr())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Addr is the server's host and port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Stderr is what the server wrote to its standard error.
func (s *Server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Events returns the events of a kind recorded so far; every event when
// kind is empty.
func (s *Server) Events(kind string) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Event
	for _, e := range s.events {
		if kind == "" || e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// Count is the number of events of a kind recorded so far.
func (s *Server) Count(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Event == kind {
			n++
		}
	}
	return n
}

// Wait waits until n events of a kind are recorded or timeout passes.
func (s *Server) Wait(kind string, n int, timeout time.Duration) error {
	end := time.After(timeout)
	for s.Count(kind) < n {
		select {
		case <-s.changed:
		case <-end:
			return fmt.Errorf("%d %s events of %d after %s", s.Count(kind), kind, n, timeout)
		case <-s.exited:
			return fmt.Errorf("the SMTP server exited: %s", s.Stderr())
		}
	}
	return nil
}

// SetRules replaces the reply rules.
func (s *Server) SetRules(rules []Rule) error {
	if rules == nil {
		rules = []Rule{}
	}
	_, err := s.command(map[string]any{"rules": rules})
	return err
}

// Kick ends every open connection, by dropping it ("abort") or saying 421
// first ("421"), and returns how many there were.
func (s *Server) Kick(how string) (int, error) {
	e, err := s.command(map[string]any{"kick": how})
	return e.N, err
}

func (s *Server) command(v any) (Event, error) {
	b, _ := json.Marshal(v)
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		return Event{}, err
	}
	select {
	case e := <-s.acks:
		return e, nil
	case <-s.exited:
		return Event{}, fmt.Errorf("the SMTP server exited: %s", s.Stderr())
	case <-time.After(10 * time.Second):
		return Event{}, errors.New("the SMTP server did not answer within 10s")
	}
}

// Close stops the server.
func (s *Server) Close() {
	_ = s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// NewCA writes to dir a test certificate authority's certificate and a
// server certificate for 127.0.0.1 and localhost that it signed, with the
// server's key; it returns the server's files and a pool holding the CA.
func NewCA(dir string) (certFile, keyFile string, roots *x509.CertPool, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Herald test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return certFile, keyFile, roots, nil
}
