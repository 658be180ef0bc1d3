// Package mailcatcher is an SMTP server for trying Herald's email
// notifications locally: it accepts every message on loopback, without TLS
// or authentication, and hands each one, envelope and all, to a callback.
// cmd/mailcatcher prints them; tests read them. It serves SMTP with
// emersion/go-smtp, a kept implementation of the protocol's server side.
package mailcatcher

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one message as received.
type Message struct {
	From string
	// To is the envelope's recipients: To, Cc and Bcc alike.
	To     []string
	Header mail.Header
	// Raw is the message as sent, headers and body.
	Raw        []byte
	ReceivedAt time.Time
}

// Server catches mail until closed.
type Server struct {
	srv *smtp.Server
	ln  net.Listener
}

// Listen starts catching mail on addr, calling got for each message.
func Listen(addr string, got func(Message)) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{got: got}, nil }))
	srv.Domain = "mailcatcher.localhost"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.MaxMessageBytes = 10 << 20
	s := &Server{srv: srv, ln: ln}
	go func() { _ = srv.Serve(ln) }()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

type session struct {
	got  func(Message)
	from string
	to   []string
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := Message{From: s.from, To: s.to, Raw: raw, ReceivedAt: time.Now()}
	if parsed, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		m.Header = parsed.Header
	}
	s.got(m)
	return nil
}
