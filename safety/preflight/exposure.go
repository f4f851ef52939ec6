package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func checkListen(_ context.Context, e *Env) Result {
	switch {
	case isLoopback(e.Listen):
		return pass(fmt.Sprintf("server.listen %s is loopback: only this host reaches the API", e.Listen))
	case e.TLSCertFile != "" && len(e.Allow) > 0:
		return pass(fmt.Sprintf("server.listen %s serves TLS to server.allow %v", e.Listen, e.Allow))
	case e.TLSCertFile == "" && e.InsecurePlaintext && len(e.Allow) > 0:
		return pass(fmt.Sprintf("server.listen %s is plain HTTP behind a TLS-terminating proxy (server.insecure_plaintext), limited to server.allow %v", e.Listen, e.Allow))
	case e.TLSCertFile == "" && !e.InsecurePlaintext:
		return fail(fmt.Sprintf("server.listen %s is reachable from other hosts without TLS", e.Listen),
			"set [server.tls] cert_file and key_file (`warden tls init` makes them), or listen on 127.0.0.1")
	default:
		return fail(fmt.Sprintf("server.listen %s is reachable from other hosts and server.allow is empty: any address may connect", e.Listen),
			"set server.allow to the client networks, e.g. [\"192.168.1.0/24\"]")
	}
}

func checkProxy(_ context.Context, e *Env) Result {
	if !e.InsecurePlaintext {
		return pass("server.insecure_plaintext is off")
	}
	if len(e.TrustedProxies) == 0 {
		return fail("server.insecure_plaintext is on but server.trusted_proxies is empty: the proxy's clients all look like the proxy, so allowlists and per-IP limits see one address",
			"set server.trusted_proxies to the TLS-terminating proxy's address (e.g. [\"127.0.0.1\"])")
	}
	return pass(fmt.Sprintf("plain HTTP behind trusted proxies %v", e.TrustedProxies))
}

// lanAddrs returns this host's non-loopback addresses.
func (e *Env) lanAddrs() ([]netip.Addr, error) {
	if e.LocalAddrs == nil {
		return InterfaceAddrs()
	}
	return e.LocalAddrs()
}

func checkBackend(ctx context.Context, e *Env) Result {
	if e.BackendPort > 0 {
		addrs, err := e.lanAddrs()
		if err != nil {
			return warn("cannot list this host's addresses: "+err.Error(), "")
		}
		for _, a := range addrs {
			target := net.JoinHostPort(a.String(), strconv.Itoa(e.BackendPort))
			if c, err := e.dial(ctx, "tcp", target); err == nil {
				c.Close()
				return fail(fmt.Sprintf("the backend's port %d answers on %s: other hosts can reach the model without a key", e.BackendPort, target),
					"bind the backend to loopback: leave runtime.ollama_url unset so Warden runs it, or set OLLAMA_HOST=127.0.0.1 on the attached server")
			}
		}
	}
	mode, _, _ := strings.Cut(e.Isolation, ",")
	switch mode {
	case "netns":
		return pass("the backend runs in its own network namespace: nothing outside Warden reaches it (" + e.Isolation + ")")
	case "loopback":
		return warn("the backend listens on a host loopback port: other local users of this host can reach it without a key ("+e.Isolation+")",
			"run Warden as root with runtime.isolation = \"netns\" (the child then runs as runtime.user), e.g. from scripts/systemd/warden.service")
	case "attached":
		return warn("the backend is attached (runtime.ollama_url): Warden cannot tell who else reaches it",
			"let Warden run the backend (unset runtime.ollama_url), or make sure the attached server listens on loopback only")
	default:
		return warn("the backend's isolation is not known ("+e.Isolation+")", "")
	}
}

func checkOtherModelServers(ctx context.Context, e *Env) Result {
	ports := e.ModelPorts
	if len(ports) == 0 {
		ports = []int{11434}
	}
	addrs, err := e.lanAddrs()
	if err != nil {
		return warn("cannot list this host's addresses: "+err.Error(), "")
	}
	if len(addrs) == 0 {
		return pass("this host has no non-loopback address")
	}
	hc := e.httpClient()
	var found []string
	for _, a := range addrs {
		for _, p := range ports {
			if p == e.BackendPort {
				continue // exposure.backend reports it
			}
			u := "http://" + net.JoinHostPort(a.String(), strconv.Itoa(p)) + "/api/version"
			if answersOllama(ctx, hc, e, u) {
				found = append(found, net.JoinHostPort(a.String(), strconv.Itoa(p)))
			}
		}
	}
	if len(found) > 0 {
		return fail(fmt.Sprintf("a model server answers without a key on %s: it bypasses Warden", strings.Join(found, ", ")),
			"stop it, or bind it to loopback (OLLAMA_HOST=127.0.0.1) and let Warden be the only door")
	}
	return pass(fmt.Sprintf("no model server answers on ports %v of %d non-loopback addresses", ports, len(addrs)))
}

func answersOllama(ctx context.Context, hc *http.Client, e *Env, u string) bool {
	ctx, cancel := context.WithTimeout(ctx, e.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var v struct {
		Version *string `json:"version"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &v) == nil && v.Version != nil
}

// InterfaceAddrs lists this host's non-loopback, non-link-local interface
// addresses.
func InterfaceAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range ifas {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip)
	}
	return out, nil
}
