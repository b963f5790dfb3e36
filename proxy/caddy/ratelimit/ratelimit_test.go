package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// clock is a hand-moved time source: no test here sleeps or reads the wall clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

// handler builds a provisioned handler on its own zone (not the shared pool).
func handler(t *testing.T, h Handler, c *clock) *Handler {
	t.Helper()
	h.now = c.now
	if err := h.setup(); err != nil {
		t.Fatal(err)
	}
	if h.Requests > 0 {
		h.zone = newZone(h.Requests, time.Duration(h.Window), h.Burst, h.MaxKeys)
	}
	return &h
}

// serve sends one request from client ip (as Caddy's client_ip) and returns the response.
func serve(t *testing.T, h *Handler, ip string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/login", nil)
	ctx := context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	req = req.WithContext(ctx)
	rec := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatal(err)
	}
	return rec
}

func statuses(t *testing.T, h *Handler, ip string, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = serve(t, h, ip).Code
	}
	return out
}

func TestFiveAMinute(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "login", Requests: 5, Window: caddy.Duration(time.Minute)}, c)
	for i, code := range statuses(t, h, "198.51.100.7", 5) {
		if code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, code)
		}
	}
	r := serve(t, h, "198.51.100.7")
	if r.Code != http.StatusTooManyRequests {
		t.Fatalf("6th request: %d, want 429", r.Code)
	}
	// One token per 12 s: the next one is 12 s away.
	if got := r.Header().Get("Retry-After"); got != "12" {
		t.Fatalf("Retry-After %q, want 12", got)
	}
	// Another client has its own allowance.
	if code := serve(t, h, "198.51.100.8").Code; code != http.StatusOK {
		t.Fatalf("other client: %d, want 200", code)
	}
	c.advance(11 * time.Second)
	r = serve(t, h, "198.51.100.7")
	if r.Code != http.StatusTooManyRequests || r.Header().Get("Retry-After") != "1" {
		t.Fatalf("after 11 s: %d Retry-After %q, want 429 and 1", r.Code, r.Header().Get("Retry-After"))
	}
	c.advance(time.Second)
	if code := serve(t, h, "198.51.100.7").Code; code != http.StatusOK {
		t.Fatalf("after 12 s: %d, want 200", code)
	}
}

func TestThreeAnHourRetryAfterRoundsUp(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "register", Requests: 3, Window: caddy.Duration(time.Hour)}, c)
	statuses(t, h, "203.0.113.9", 3)
	c.advance(90*time.Second + 300*time.Millisecond)
	r := serve(t, h, "203.0.113.9")
	// 20 min per token, 90.3 s gone: 1109.7 s left, announced as 1110.
	if r.Code != http.StatusTooManyRequests || r.Header().Get("Retry-After") != "1110" {
		t.Fatalf("%d Retry-After %q, want 429 and 1110", r.Code, r.Header().Get("Retry-After"))
	}
}

func TestBurstAboveRate(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "api", Requests: 60, Window: caddy.Duration(time.Minute), Burst: 10}, c)
	got := statuses(t, h, "192.0.2.1", 11)
	for i, code := range got[:10] {
		if code != http.StatusOK {
			t.Fatalf("request %d: %d", i+1, code)
		}
	}
	if got[10] != http.StatusTooManyRequests {
		t.Fatalf("11th: %d, want 429", got[10])
	}
	c.advance(time.Second)
	if code := serve(t, h, "192.0.2.1").Code; code != http.StatusOK {
		t.Fatalf("a second later: %d, want 200", code)
	}
}

func TestExemptNetworkIsNotLimited(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "login", Requests: 1, Window: caddy.Duration(time.Hour), Exempt: []string{"10.0.0.0/8"}}, c)
	for i, code := range statuses(t, h, "10.1.2.3", 20) {
		if code != http.StatusOK {
			t.Fatalf("exempt request %d: %d", i+1, code)
		}
	}
	if got := statuses(t, h, "11.1.2.3", 2); got[1] != http.StatusTooManyRequests {
		t.Fatalf("non-exempt client: %v, want the 2nd refused", got)
	}
	if h.zone.size() != 1 {
		t.Fatalf("exempt clients took buckets: %d", h.zone.size())
	}
}

func TestAllowFromOnly(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{AllowFrom: []string{"203.0.113.0/24", "2001:db8::/32"}}, c)
	for ip, want := range map[string]int{
		"203.0.113.200":      http.StatusOK,
		"203.0.114.1":        http.StatusForbidden,
		"2001:db8::1":        http.StatusOK,
		"2001:db9::1":        http.StatusForbidden,
		"::ffff:203.0.113.5": http.StatusOK,
		"not-an-address":     http.StatusForbidden,
	} {
		if code := serve(t, h, ip).Code; code != want {
			t.Errorf("%s: %d, want %d", ip, code, want)
		}
	}
	if h.zone != nil {
		t.Fatal("an allow-list alone needs no buckets")
	}
}

func TestAllowFromWithRate(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "admin", Requests: 1, Window: caddy.Duration(time.Minute), AllowFrom: []string{"198.51.100.0/24"}}, c)
	if got := statuses(t, h, "198.51.100.1", 2); got[0] != http.StatusOK || got[1] != http.StatusTooManyRequests {
		t.Fatalf("admitted client: %v, want 200 then 429", got)
	}
	if code := serve(t, h, "192.0.2.1").Code; code != http.StatusForbidden {
		t.Fatalf("outside client: %d, want 403", code)
	}
}

func TestIPv6ClientsShareTheirSlash64(t *testing.T) {
	c := newClock()
	h := handler(t, Handler{Zone: "login", Requests: 2, Window: caddy.Duration(time.Minute)}, c)
	serve(t, h, "2001:db8:1:2::1")
	serve(t, h, "2001:db8:1:2::ffff")
	if code := serve(t, h, "2001:db8:1:2:abcd::9").Code; code != http.StatusTooManyRequests {
		t.Fatalf("third address of the same /64: %d, want 429", code)
	}
	if code := serve(t, h, "2001:db8:1:3::1").Code; code != http.StatusOK {
		t.Fatalf("another /64: %d, want 200", code)
	}
}

func TestIdleBucketsAreDropped(t *testing.T) {
	c := newClock()
	z := newZone(5, time.Minute, 5, 100)
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		z.take(ip, c.now())
	}
	c.advance(30 * time.Second)
	z.take("192.0.2.4", c.now())
	if z.size() != 4 {
		t.Fatalf("size %d, want 4 (none refilled yet)", z.size())
	}
	// An empty 5/min bucket refills in 60 s: the first three have, the fourth has not.
	c.advance(30 * time.Second)
	z.take("192.0.2.5", c.now())
	if z.size() != 2 {
		t.Fatalf("size %d, want 2", z.size())
	}
}

func TestKeyCapDropsTheLeastRecentlySeen(t *testing.T) {
	c := newClock()
	z := newZone(1, time.Hour, 1, 3)
	for _, ip := range []string{"a", "b", "c"} {
		z.take(ip, c.now())
		c.advance(time.Second)
	}
	z.take("a", c.now()) // a is now the most recent; b the least
	z.take("d", c.now())
	if z.size() != 3 {
		t.Fatalf("size %d, want the cap 3", z.size())
	}
	if ok, _ := z.take("a", c.now()); ok {
		t.Fatal("a was forgotten, want it kept (recently seen)")
	}
	if ok, _ := z.take("b", c.now()); !ok {
		t.Fatal("b still limited, want it dropped at the cap")
	}
}

func TestSetupRefusesBadSettings(t *testing.T) {
	for name, h := range map[string]Handler{
		"nothing":             {},
		"rate without zone":   {Requests: 1, Window: caddy.Duration(time.Minute)},
		"no window":           {Zone: "z", Requests: 1},
		"no requests":         {Zone: "z", Window: caddy.Duration(time.Minute)},
		"negative burst":      {Zone: "z", Requests: 1, Window: caddy.Duration(time.Minute), Burst: -1},
		"bad exempt":          {Zone: "z", Requests: 1, Window: caddy.Duration(time.Minute), Exempt: []string{"10.0.0.1"}},
		"bad allow_from":      {AllowFrom: []string{"example.com"}},
		"exempt without rate": {AllowFrom: []string{"10.0.0.0/8"}, Exempt: []string{"10.0.0.0/8"}},
	} {
		if err := h.setup(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`onebox_rate_limit {
		zone app.example.com/login
		rate 5 1m
		burst 7
		exempt 10.0.0.0/8 192.168.0.0/16
		allow_from 0.0.0.0/0
		max_keys 1000
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.Zone != "app.example.com/login" || h.Requests != 5 || time.Duration(h.Window) != time.Minute || h.Burst != 7 || h.MaxKeys != 1000 ||
		strings.Join(h.Exempt, " ") != "10.0.0.0/8 192.168.0.0/16" || strings.Join(h.AllowFrom, " ") != "0.0.0.0/0" {
		t.Fatalf("parsed %+v", h)
	}
	for _, bad := range []string{
		"onebox_rate_limit {\n rate 5\n}",
		"onebox_rate_limit {\n rate 0 1m\n}",
		"onebox_rate_limit {\n rate 5 soon\n}",
		"onebox_rate_limit {\n burst -1\n}",
		"onebox_rate_limit {\n zone a b\n}",
		"onebox_rate_limit {\n limit 5\n}",
		"onebox_rate_limit extra",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":         "192.0.2.1",
		"::ffff:192.0.2.1":  "192.0.2.1",
		"2001:db8:a:b:c::1": "2001:db8:a:b::/64",
	} {
		if got := clientKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
