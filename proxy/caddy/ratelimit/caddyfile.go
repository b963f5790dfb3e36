package ratelimit

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("onebox_rate_limit", parseCaddyfile)
	// Before anything that answers or proxies: a refused request goes no further.
	httpcaddyfile.RegisterDirectiveOrder("onebox_rate_limit", httpcaddyfile.Before, "rewrite")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile reads
//
//	onebox_rate_limit [<matcher>] {
//		zone       <name>
//		rate       <requests> <window>
//		burst      <n>
//		exempt     <cidr...>
//		allow_from <cidr...>
//		max_keys   <n>
//	}
func (m *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "zone":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Zone = d.Val()
		case "rate":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n <= 0 {
				return d.Errf("rate: %q is not a positive number of requests", args[0])
			}
			w, err := caddy.ParseDuration(args[1])
			if err != nil || w <= 0 {
				return d.Errf("rate: %q is not a positive duration (e.g. 1m, 1h)", args[1])
			}
			m.Requests, m.Window = n, caddy.Duration(w)
		case "burst", "max_keys":
			name := d.Val()
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("%s: %q is not a positive number", name, d.Val())
			}
			if name == "burst" {
				m.Burst = n
			} else {
				m.MaxKeys = n
			}
		case "exempt":
			m.Exempt = append(m.Exempt, d.RemainingArgs()...)
		case "allow_from":
			m.AllowFrom = append(m.AllowFrom, d.RemainingArgs()...)
		default:
			return d.Errf("unknown setting %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
