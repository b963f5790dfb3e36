// Package ratelimit is a Caddy HTTP handler that limits requests per client
// and admits or exempts client networks: http.handlers.onebox_rate_limit,
// Caddyfile directive onebox_rate_limit.
//
// The client is Caddy's own client address (the client_ip variable): the
// connection's peer, or the address a trusted proxy names (servers
// trusted_proxies / client_ip_headers), so a limit behind Cloudflare applies
// per visitor and never to Cloudflare's addresses.
package ratelimit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// DefaultMaxKeys caps the clients tracked per zone (a few hundred bytes each).
const DefaultMaxKeys = 100000

func init() {
	caddy.RegisterModule(Handler{})
}

// zones keeps each zone's buckets across config reloads (a deploy reloads
// the proxy; it must not give every client a fresh allowance).
var zones = caddy.NewUsagePool()

// Handler limits the requests of each client and filters clients by network.
//
// With requests and window set, each client (see clientKey) may send burst
// requests at once and then requests per window; beyond that it gets 429 Too
// Many Requests with Retry-After. Clients in exempt are never limited. With
// allow_from set, clients outside those networks get 403 Forbidden.
type Handler struct {
	// Zone names the limit; buckets are kept per zone. Required with requests.
	Zone string `json:"zone,omitempty"`
	// Requests allowed per window (refill rate), with Window.
	Requests int `json:"requests,omitempty"`
	// Window of Requests, any duration (1m, 1h).
	Window caddy.Duration `json:"window,omitempty"`
	// Burst is how many requests a client may send at once; defaults to Requests.
	Burst int `json:"burst,omitempty"`
	// Exempt networks (CIDRs) are never limited.
	Exempt []string `json:"exempt,omitempty"`
	// AllowFrom, when set, admits only these networks (CIDRs); others get 403.
	AllowFrom []string `json:"allow_from,omitempty"`
	// MaxKeys caps the clients tracked in the zone. Defaults to DefaultMaxKeys.
	MaxKeys int `json:"max_keys,omitempty"`

	exempt    []netip.Prefix
	allowFrom []netip.Prefix
	zone      *zone
	poolKey   string
	now       func() time.Time
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.onebox_rate_limit",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the settings and finds or creates the zone's buckets.
func (h *Handler) Provision(_ caddy.Context) error {
	if err := h.setup(); err != nil {
		return err
	}
	if h.Requests == 0 {
		return nil
	}
	// Same name and parameters: the same buckets as before the reload.
	h.poolKey = fmt.Sprintf("%s|%d|%d|%d|%d", h.Zone, h.Requests, time.Duration(h.Window), h.Burst, h.MaxKeys)
	z, _, err := zones.LoadOrNew(h.poolKey, func() (caddy.Destructor, error) {
		return newZone(h.Requests, time.Duration(h.Window), h.Burst, h.MaxKeys), nil
	})
	if err != nil {
		return err
	}
	h.zone = z.(*zone)
	return nil
}

// setup validates and fills defaults (no shared state).
func (h *Handler) setup() error {
	var err error
	if h.exempt, err = parsePrefixes("exempt", h.Exempt); err != nil {
		return err
	}
	if h.allowFrom, err = parsePrefixes("allow_from", h.AllowFrom); err != nil {
		return err
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.Requests == 0 && h.Window == 0 {
		if len(h.allowFrom) == 0 {
			return fmt.Errorf("onebox_rate_limit: set a rate (requests and window), allow_from, or both")
		}
		if h.Burst != 0 || len(h.exempt) > 0 {
			return fmt.Errorf("onebox_rate_limit: burst and exempt need a rate")
		}
		return nil
	}
	if h.Requests <= 0 {
		return fmt.Errorf("onebox_rate_limit: requests must be a positive number, got %d", h.Requests)
	}
	if h.Window <= 0 {
		return fmt.Errorf("onebox_rate_limit: window must be a positive duration")
	}
	if h.Zone == "" {
		return fmt.Errorf("onebox_rate_limit: a rate needs a zone name")
	}
	if h.Burst < 0 {
		return fmt.Errorf("onebox_rate_limit: burst must be positive, got %d", h.Burst)
	}
	if h.Burst == 0 {
		h.Burst = h.Requests
	}
	if h.MaxKeys < 0 {
		return fmt.Errorf("onebox_rate_limit: max_keys must be positive, got %d", h.MaxKeys)
	}
	if h.MaxKeys == 0 {
		h.MaxKeys = DefaultMaxKeys
	}
	return nil
}

// Cleanup releases the zone (it is dropped once no config uses it).
func (h *Handler) Cleanup() error {
	if h.poolKey == "" {
		return nil
	}
	_, err := zones.Delete(h.poolKey)
	return err
}

func parsePrefixes(setting string, values []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(values))
	for _, v := range values {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return nil, fmt.Errorf("onebox_rate_limit: %s: %q is not a CIDR (e.g. 203.0.113.0/24)", setting, v)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientAddr is the client as Caddy determined it (client_ip), else the peer.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		s = host
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// ServeHTTP admits, refuses (403) or limits (429) the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	addr, ok := clientAddr(r)
	if len(h.allowFrom) > 0 && (!ok || !contains(h.allowFrom, addr)) {
		return deny(w, http.StatusForbidden)
	}
	if h.zone == nil || (ok && contains(h.exempt, addr)) {
		return next.ServeHTTP(w, r)
	}
	key := "unknown"
	if ok {
		key = clientKey(addr)
	}
	allowed, wait := h.zone.take(key, h.now())
	if !allowed {
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(wait), 10))
		return deny(w, http.StatusTooManyRequests)
	}
	return next.ServeHTTP(w, r)
}

// retryAfterSeconds rounds up to whole seconds, at least 1 (a client told 0 retries at once).
func retryAfterSeconds(wait time.Duration) int64 {
	s := int64((wait + time.Second - 1) / time.Second)
	if s < 1 {
		return 1
	}
	return s
}

func deny(w http.ResponseWriter, status int) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := fmt.Fprintln(w, http.StatusText(status))
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
