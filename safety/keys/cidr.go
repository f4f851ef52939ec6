package keys

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// maxCIDRs bounds the client networks one key may list.
const maxCIDRs = 64

// normalizeCIDRs checks a key's client networks and returns them in
// canonical form: each a CIDR ("10.0.0.0/24", host bits cleared) or a
// single address (stored as a /32 or /128), trimmed and deduplicated, in
// the order given. An empty list allows any address.
func normalizeCIDRs(in []string) ([]string, error) {
	if len(in) > maxCIDRs {
		return nil, fmt.Errorf("%d client networks, at most %d allowed", len(in), maxCIDRs)
	}
	out := make([]string, 0, len(in))
	for _, c := range in {
		p, err := parseCIDR(c)
		if err != nil {
			return nil, err
		}
		if s := p.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// parseCIDR parses one client network: a CIDR or a single address.
func parseCIDR(c string) (netip.Prefix, error) {
	c = strings.TrimSpace(c)
	if c == "" {
		return netip.Prefix{}, errors.New("empty client network (allow-cidr)")
	}
	if p, err := netip.ParsePrefix(c); err == nil {
		if p.Addr().Is4In6() { // ::ffff:10.0.0.0/104 is 10.0.0.0/8
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("client network %q mixes IPv4-mapped and IPv6 addresses; give the IPv4 CIDR", c)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(c); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("client network %q is not a CIDR (10.0.0.0/24) or an IP address", c)
}

// compileCIDRs parses stored networks. One that does not parse (not
// written through this package) becomes the zero Prefix, which contains
// nothing, so the key does not fall open to every address.
func compileCIDRs(cidrs []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := parseCIDR(c)
		if err != nil {
			p = netip.Prefix{}
		}
		out = append(out, p)
	}
	return out
}

// AllowsAddr reports whether the key may be used from client address ip.
// A key without networks allows every address; a key with some refuses
// an address it cannot know (the zero Addr).
func (p *Principal) AllowsAddr(ip netip.Addr) bool {
	if p == nil {
		return false
	}
	if len(p.nets) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, n := range p.nets {
		if n.IsValid() && n.Contains(ip) {
			return true
		}
	}
	return false
}
