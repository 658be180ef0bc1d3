// Package eventbridgetest stands in for Amazon EventBridge's PutEvents and
// STS's AssumeRole over HTTP, for the faults an emulator cannot make. It
// speaks the wire protocols the AWS SDK uses (AWS JSON 1.1 with
// X-Amz-Target AWSEvents.PutEvents; the AWS query protocol for STS),
// records each call with the access key that signed it, and answers as
// the test scripts it: an error code per entry, or a call-level error with
// its HTTP status. Point the SDK at it with AWS_ENDPOINT_URL (or the
// client's BaseEndpoint).
package eventbridgetest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one PutEvents entry as the stand-in got it.
type Entry struct {
	EventBusName, Source, DetailType, Detail string
	Time                                     time.Time
}

// Call is one PutEvents call: its entries, the access key and region of
// its signature, and when it arrived.
type Call struct {
	Entries           []Entry
	AccessKey, Region string
	At                time.Time
}

// Reply is the stand-in's answer to one call.
type Reply struct {
	// Code, when set, fails the whole call with this error type and
	// Status (default 400).
	Code   string
	Status int
	// EntryCodes fails, in a call that succeeds, each entry whose code is
	// not empty; it may be shorter than the call.
	EntryCodes []string
}

// AssumedRole is one AssumeRole call.
type AssumedRole struct {
	RoleARN, ExternalID, SessionName string
	// AccessKey is the key of the credentials it handed out.
	AccessKey string
}

// Respond scripts the answer to the n-th call (from 0).
type Respond func(n int, c Call) Reply

// Server is the stand-in.
type Server struct {
	// URL is the endpoint, for AWS_ENDPOINT_URL.
	URL string

	srv     *httptest.Server
	respond Respond
	latency time.Duration
	keep    bool

	calls, entries atomic.Int64
	keys           atomic.Int64

	mu      sync.Mutex
	got     []Call
	assumed []AssumedRole
	changed chan struct{}
}

// Option changes a Server.
type Option func(*Server)

// Latency makes every PutEvents call take d before it answers.
func Latency(d time.Duration) Option { return func(s *Server) { s.latency = d } }

// CountOnly keeps counts of calls and entries but not the calls, for
// benchmarks.
func CountOnly() Option { return func(s *Server) { s.keep = false } }

// New starts a stand-in that answers with respond (nil accepts every
// entry). Close it when done.
func New(respond Respond, opts ...Option) *Server {
	s := &Server{respond: respond, keep: true, changed: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Counts returns the PutEvents calls and entries received so far.
func (s *Server) Counts() (calls, entries int64) { return s.calls.Load(), s.entries.Load() }

// Calls returns the PutEvents calls received so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.got...)
}

// AssumedRoles returns the AssumeRole calls received so far.
func (s *Server) AssumedRoles() []AssumedRole {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AssumedRole(nil), s.assumed...)
}

// Wait waits until done says yes to the PutEvents calls received so far,
// and returns them; it fails after d.
func (s *Server) Wait(d time.Duration, done func(calls []Call) bool) ([]Call, error) {
	deadline := time.After(d)
	for {
		if got := s.Calls(); done(got) {
			return got, nil
		}
		select {
		case <-s.changed:
		case <-deadline:
			return s.Calls(), fmt.Errorf("PutEvents calls not as awaited within %s", d)
		}
	}
}

// ServeHTTP answers PutEvents and AssumeRole.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key, region := signer(r.Header.Get("Authorization"))
	switch target := r.Header.Get("X-Amz-Target"); target {
	case "AWSEvents.PutEvents":
		s.putEvents(w, body, key, region)
	case "":
		s.assumeRole(w, body)
	default:
		jsonError(w, http.StatusBadRequest, "UnknownOperationException", "the stand-in serves AWSEvents.PutEvents only, not "+target)
	}
}

// putEvents answers one PutEvents call.
func (s *Server) putEvents(w http.ResponseWriter, body []byte, key, region string) {
	var in struct {
		Entries []struct {
			EventBusName, Source, DetailType, Detail string
			Time                                     *float64
		}
	}
	if err := json.Unmarshal(body, &in); err != nil {
		jsonError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	call := Call{AccessKey: key, Region: region, At: time.Now()}
	for _, e := range in.Entries {
		en := Entry{EventBusName: e.EventBusName, Source: e.Source, DetailType: e.DetailType, Detail: e.Detail}
		if e.Time != nil {
			sec, frac := math.Modf(*e.Time)
			en.Time = time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
		}
		call.Entries = append(call.Entries, en)
	}
	n := int(s.calls.Add(1) - 1)
	s.entries.Add(int64(len(call.Entries)))
	var reply Reply
	if s.respond != nil {
		reply = s.respond(n, call)
	}
	if s.latency > 0 {
		time.Sleep(s.latency)
	}
	if s.keep {
		s.mu.Lock()
		s.got = append(s.got, call)
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	if reply.Code != "" {
		jsonError(w, reply.Status, reply.Code, "scripted failure")
		return
	}
	type result struct {
		EventId      string `json:",omitempty"`
		ErrorCode    string `json:",omitempty"`
		ErrorMessage string `json:",omitempty"`
	}
	out := struct {
		FailedEntryCount int
		Entries          []result
	}{Entries: make([]result, len(call.Entries))}
	for i := range call.Entries {
		if i < len(reply.EntryCodes) && reply.EntryCodes[i] != "" {
			out.FailedEntryCount++
			out.Entries[i] = result{ErrorCode: reply.EntryCodes[i], ErrorMessage: "scripted " + reply.EntryCodes[i]}
			continue
		}
		out.Entries[i] = result{EventId: fmt.Sprintf("%08d-%04d", n, i)}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// assumeRole answers STS AssumeRole with fresh credentials that last an
// hour.
func (s *Server) assumeRole(w http.ResponseWriter, body []byte) {
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("Action") != "AssumeRole" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>the stand-in serves AssumeRole only</Message></Error></ErrorResponse>`)
		return
	}
	key := fmt.Sprintf("ASIASTANDIN%09d", s.keys.Add(1))
	s.mu.Lock()
	s.assumed = append(s.assumed, AssumedRole{RoleARN: form.Get("RoleArn"), ExternalID: form.Get("ExternalId"), SessionName: form.Get("RoleSessionName"), AccessKey: key})
	s.mu.Unlock()
	type credentials struct {
		AccessKeyId, SecretAccessKey, SessionToken, Expiration string
	}
	var out struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ AssumeRoleResponse"`
		Result  struct {
			Credentials     credentials
			AssumedRoleUser struct{ Arn, AssumedRoleId string }
		} `xml:"AssumeRoleResult"`
		ResponseMetadata struct{ RequestId string }
	}
	out.Result.Credentials = credentials{AccessKeyId: key, SecretAccessKey: "secret-" + key, SessionToken: "token-" + key,
		Expiration: time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	out.Result.AssumedRoleUser.Arn = form.Get("RoleArn")
	out.Result.AssumedRoleUser.AssumedRoleId = "AROASTANDIN:" + form.Get("RoleSessionName")
	out.ResponseMetadata.RequestId = key
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(out)
}

// jsonError writes an AWS JSON 1.1 error.
func jsonError(w http.ResponseWriter, status int, code, msg string) {
	if status == 0 {
		status = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// signer returns the access key and region of a SigV4 Authorization
// header: "AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request, …".
func signer(auth string) (key, region string) {
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 3 {
		return "", ""
	}
	return parts[0], parts[2]
}
