// Package egress decides which network addresses Herald may call on a
// tenant's behalf, so that a destination URL cannot reach Herald's own
// network (SSRF).
//
// A Policy is built from Config (HERALD_WEBHOOK_* variables, shared by the
// admin API, which checks a URL when a destination is saved, and by the
// senders, which check every connection). CheckURL judges a URL's scheme,
// port and, when the host is an address or resolves, its addresses.
// Control is a net.Dialer Control hook: it runs after DNS resolution, for
// every address the dialer tries, before the connection is made, so a name
// that resolves to a forbidden address, or that changes its answer between
// the save and the send, is still refused.
//
// Forbidden by default: unspecified, loopback, private, link-local (which
// holds the cloud metadata address 169.254.169.254), CGNAT shared space
// (which holds Alibaba's 100.100.100.200), multicast, broadcast and
// reserved, documentation and benchmarking ranges, IETF protocol
// assignments, unique-local IPv6 (which holds AWS's fd00:ec2::254), and
// IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible,
// NAT64 and 6to4), judged by the address they carry.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrForbidden is returned for an address or URL the policy refuses.
var ErrForbidden = errors.New("address not allowed")

// Config is the egress policy as HERALD_WEBHOOK_* variables set it.
type Config struct {
	// AllowLoopback lets destinations reach loopback addresses; only the
	// devstack and tests set it.
	AllowLoopback bool `env:"WEBHOOK_ALLOW_LOOPBACK"`
	// AllowHTTP accepts plain http:// URLs; only the devstack and tests
	// set it.
	AllowHTTP bool `env:"WEBHOOK_ALLOW_HTTP"`
	// Ports are the ports a destination may use; "any" allows every port.
	Ports string `env:"WEBHOOK_PORTS" envDefault:"443,8443"`
	// AllowNetworks are CIDR prefixes allowed even though the policy
	// would refuse them, such as an internal gateway.
	AllowNetworks []string `env:"WEBHOOK_ALLOW_NETWORKS" envSeparator:","`
	// PortsVariable names the variable Ports came from in errors, for a
	// channel with ports of its own; "" means HERALD_WEBHOOK_PORTS.
	PortsVariable string `env:"-"`
}

// Policy says which addresses and URLs may be called.
type Policy struct {
	allowLoopback bool
	allowHTTP     bool
	anyPort       bool
	ports         []uint16
	allow         []netip.Prefix
}

// New validates c and returns its policy.
func New(c Config) (*Policy, error) {
	p := &Policy{allowLoopback: c.AllowLoopback, allowHTTP: c.AllowHTTP}
	portsVar := c.PortsVariable
	if portsVar == "" {
		portsVar = "HERALD_WEBHOOK_PORTS"
	}
	switch strings.TrimSpace(c.Ports) {
	case "any":
		p.anyPort = true
	case "":
		return nil, fmt.Errorf(`%s: required (a comma-separated list, or "any")`, portsVar)
	default:
		for _, s := range strings.Split(c.Ports, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("%s: %q is not a port", portsVar, s)
			}
			p.ports = append(p.ports, uint16(n))
		}
	}
	for _, s := range c.AllowNetworks {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("HERALD_WEBHOOK_ALLOW_NETWORKS: %w", err)
		}
		p.allow = append(p.allow, pfx.Masked())
	}
	return p, nil
}

// Validate checks c.
func (c Config) Validate() error {
	_, err := New(c)
	return err
}

// AllowsHTTP reports whether plain http:// URLs are accepted.
func (p *Policy) AllowsHTTP() bool { return p.allowHTTP }

// forbidden are the ranges no destination may reach, with the reason given.
var forbidden = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:2::/48"), "benchmarking"},
	{netip.MustParsePrefix("2001:10::/28"), "ORCHID"},
	{netip.MustParsePrefix("2001:20::/28"), "ORCHIDv2"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing"},
	{netip.MustParsePrefix("fc00::/7"), "unique local (cloud metadata)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	compat    = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries in the
// forms that route to it: IPv4-mapped, IPv4-compatible, NAT64 and 6to4.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if a.Is4In6() {
		return a.Unmap(), true
	}
	b := a.As16()
	switch {
	case nat64.Contains(a), compat.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// CheckAddr returns nil when a may be called, or an error wrapping
// ErrForbidden that says why not.
func (p *Policy) CheckAddr(a netip.Addr) error {
	a = a.WithZone("")
	for _, pfx := range p.allow {
		if pfx.Contains(a) {
			return nil
		}
	}
	if v4, ok := embeddedIPv4(a); ok {
		if err := p.CheckAddr(v4); err != nil {
			return fmt.Errorf("%s carries %s: %w", a, v4, err)
		}
		return nil
	}
	if p.allowLoopback && a.IsLoopback() {
		return nil
	}
	for _, f := range forbidden {
		if f.prefix.Contains(a) {
			return fmt.Errorf("%w: %s is %s", ErrForbidden, a, f.why)
		}
	}
	if !a.IsGlobalUnicast() {
		return fmt.Errorf("%w: %s is not a global unicast address", ErrForbidden, a)
	}
	return nil
}

// CheckPort returns nil when port may be called.
func (p *Policy) CheckPort(port uint16) error {
	if p.anyPort || slices.Contains(p.ports, port) {
		return nil
	}
	return fmt.Errorf("%w: port %d is not one of the allowed ports", ErrForbidden, port)
}

// CheckAddrPort checks an address and its port.
func (p *Policy) CheckAddrPort(ap netip.AddrPort) error {
	if err := p.CheckPort(ap.Port()); err != nil {
		return err
	}
	return p.CheckAddr(ap.Addr())
}

// Control is a net.Dialer Control hook that refuses, before the
// connection is made, every address the policy forbids.
func (p *Policy) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrForbidden, address)
	}
	return p.CheckAddrPort(ap)
}

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// CheckURL checks a destination URL: absolute, https (or http when
// allowed), no credentials, an allowed port, and a host that is not a
// forbidden address and does not resolve to one. A name that does not
// resolve is accepted: the connection is checked again when it is made.
func (p *Policy) CheckURL(ctx context.Context, r Resolver, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.allowHTTP {
			return errors.New("must use https")
		}
	default:
		return errors.New("must be an https URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials; use headers")
	}
	port, err := urlPort(u)
	if err != nil {
		return err
	}
	if err := p.CheckPort(port); err != nil {
		return err
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(a)
	}
	if r == nil {
		return nil
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := p.CheckAddr(a); err != nil {
			return fmt.Errorf("%s resolves to a forbidden address: %w", host, err)
		}
	}
	return nil
}

func urlPort(u *url.URL) (uint16, error) {
	s := u.Port()
	if s == "" {
		if u.Scheme == "http" {
			return 80, nil
		}
		return 443, nil
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not valid", s)
	}
	return uint16(n), nil
}

// Dialer returns a dialer that enforces the policy on every connection.
func (p *Policy) Dialer(base net.Dialer) *net.Dialer {
	d := base
	d.Control = p.Control
	return &d
}
