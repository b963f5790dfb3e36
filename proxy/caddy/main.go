// Command caddy is the proxy of a onebox stack: Caddy with its standard
// modules and onebox's own rate limiter (package ratelimit). The Caddy version
// is the one pinned in go.mod; bump it there and rebuild the image
// (scripts/build-proxy-image.sh) to update.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "onebox/proxy/caddy/ratelimit"
)

func main() {
	caddycmd.Main()
}
