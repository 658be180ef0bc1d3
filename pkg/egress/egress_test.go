package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustPolicy(t *testing.T, c Config) *Policy {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProductionPolicyRefusesNonPublicAddresses(t *testing.T) {
	p := mustPolicy(t, Config{Ports: "443"})
	refused := []string{
		"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.255.255.254", "10.1.2.3", "172.16.0.1", "172.31.255.255",
		"192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.100.100.200", "100.127.255.255",
		"224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.10", "198.51.100.7",
		"203.0.113.9", "198.18.0.1", "192.0.0.170",
		"::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "2001:db8::1", "3fff::1", "fec0::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:7f00:1::1", "2002:c0a8:101::1",
		"2001::1", "100::1",
	}
	for _, s := range refused {
		if err := p.CheckAddr(netip.MustParseAddr(s)); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: got %v, want ErrForbidden", s, err)
		}
	}
	allowed := []string{"93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"}
	for _, s := range allowed {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: refused: %v", s, err)
		}
	}
}

func TestLoopbackAllowedOnlyByConfiguration(t *testing.T) {
	p := mustPolicy(t, Config{Ports: "any", AllowLoopback: true})
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused with loopback allowed: %v", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1", "169.254.169.254", "0.0.0.0", "::"} {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s allowed: only loopback should be", s)
		}
	}
}

func TestAllowNetworksExemptsAPrefix(t *testing.T) {
	p := mustPolicy(t, Config{Ports: "443", AllowNetworks: []string{"10.20.0.0/16"}})
	if err := p.CheckAddr(netip.MustParseAddr("10.20.3.4")); err != nil {
		t.Errorf("allowed network refused: %v", err)
	}
	if err := p.CheckAddr(netip.MustParseAddr("10.21.3.4")); err == nil {
		t.Error("address outside the allowed network accepted")
	}
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	for _, c := range []Config{{Ports: ""}, {Ports: "443,x"}, {Ports: "0"}, {Ports: "443", AllowNetworks: []string{"nope"}}} {
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "HERALD_WEBHOOK_") {
			t.Errorf("%+v: got %v, want an error naming the variable", c, err)
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestCheckURL(t *testing.T) {
	prod := mustPolicy(t, Config{Ports: "443,8443"})
	dev := mustPolicy(t, Config{Ports: "any", AllowHTTP: true, AllowLoopback: true})
	r := fakeResolver{
		"hooks.example.com": {netip.MustParseAddr("93.184.216.34")},
		"sneaky.example":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("127.0.0.1")},
		"meta.example":      {netip.MustParseAddr("169.254.169.254")},
	}
	cases := []struct {
		p    *Policy
		url  string
		want string // "" means accepted
	}{
		{prod, "https://hooks.example.com/x", ""},
		{prod, "https://hooks.example.com:8443/x", ""},
		{prod, "https://unresolvable.example/x", ""},
		{prod, "http://hooks.example.com/x", "https"},
		{prod, "https://hooks.example.com:9000/x", "port"},
		{prod, "https://127.0.0.1/x", "loopback"},
		{prod, "https://[::1]/x", "loopback"},
		{prod, "https://[::ffff:127.0.0.1]/x", "loopback"},
		{prod, "https://169.254.169.254/latest", "link-local"},
		{prod, "https://sneaky.example/x", "resolves"},
		{prod, "https://meta.example/x", "resolves"},
		{prod, "https://user:pw@hooks.example.com/x", "credentials"},
		{prod, "ftp://hooks.example.com/x", "https"},
		{prod, "/relative", "absolute"},
		{prod, "https:opaque", "absolute"},
		{dev, "http://127.0.0.1:9000/hook", ""},
		{dev, "http://10.0.0.1:9000/hook", "private"},
	}
	for _, c := range cases {
		err := c.p.CheckURL(t.Context(), r, c.url)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.url, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error mentioning %q", c.url, err, c.want)
		}
	}
}

// TestDialerRefusesLoopbackBeforeConnecting dials a listening loopback
// socket through the production dialer and shows no connection arrives.
func TestDialerRefusesLoopbackBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	d := mustPolicy(t, Config{Ports: "any"}).Dialer(net.Dialer{Timeout: time.Second})
	for _, host := range []string{"127.0.0.1", "localhost", "0.0.0.0", "::ffff:127.0.0.1"} {
		c, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			c.Close()
			t.Errorf("dial %s: connected", host)
		} else if !errors.Is(err, ErrForbidden) {
			t.Errorf("dial %s: %v, want ErrForbidden", host, err)
		}
	}
	ln.Close()
	select {
	case <-accepted:
		t.Error("the loopback listener accepted a connection")
	default:
	}
}
