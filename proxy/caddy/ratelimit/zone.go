package ratelimit

import (
	"container/list"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// zone holds one token bucket per client of one rate limit.
//
// Each client may send up to burst requests at once; the bucket then refills
// at requests per window, one token every window/requests. A bucket that has
// been idle long enough to refill completely is indistinguishable from a new
// one, so it is dropped: memory follows the clients active within that time,
// and never exceeds maxKeys buckets (the least recently seen one is dropped
// first when a new client arrives at the cap).
type zone struct {
	limit   rate.Limit
	burst   int
	idle    time.Duration
	maxKeys int

	mu      sync.Mutex
	buckets map[string]*list.Element
	// Most recently seen first.
	lru *list.List
}

type bucket struct {
	key      string
	limiter  *rate.Limiter
	lastSeen time.Time
}

func newZone(requests int, window time.Duration, burst, maxKeys int) *zone {
	perSecond := float64(requests) / window.Seconds()
	// Time for an empty bucket to fill again.
	idle := time.Duration(math.Ceil(float64(burst) / perSecond * float64(time.Second)))
	return &zone{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idle:    idle,
		maxKeys: maxKeys,
		buckets: make(map[string]*list.Element),
		lru:     list.New(),
	}
}

// take spends one token of key's bucket at now. When none is left it returns
// false and how long until the next token.
func (z *zone) take(key string, now time.Time) (bool, time.Duration) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.evictIdle(now)

	var b *bucket
	if el, ok := z.buckets[key]; ok {
		b = el.Value.(*bucket)
		z.lru.MoveToFront(el)
	} else {
		if z.lru.Len() >= z.maxKeys {
			z.remove(z.lru.Back())
		}
		b = &bucket{key: key, limiter: rate.NewLimiter(z.limit, z.burst)}
		z.buckets[key] = z.lru.PushFront(b)
	}
	b.lastSeen = now

	if b.limiter.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.limiter.TokensAt(now)
	// To the microsecond: float error must not turn 12 s into 12.000000001 s (13 once rounded up).
	wait := time.Duration(math.Round(missing/float64(z.limit)*1e6)) * time.Microsecond
	return false, wait
}

// evictIdle drops, oldest first, the buckets that have refilled completely.
func (z *zone) evictIdle(now time.Time) {
	for el := z.lru.Back(); el != nil; el = z.lru.Back() {
		if now.Sub(el.Value.(*bucket).lastSeen) < z.idle {
			return
		}
		z.remove(el)
	}
}

func (z *zone) remove(el *list.Element) {
	delete(z.buckets, el.Value.(*bucket).key)
	z.lru.Remove(el)
}

// size is the number of buckets held.
func (z *zone) size() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.lru.Len()
}

// Destruct lets a zone live in a caddy.UsagePool.
func (z *zone) Destruct() error { return nil }

// clientKey is the bucket key of a client address: the address itself for
// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64, so
// per-address buckets would give one client billions of them).
func clientKey(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		p, err := addr.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return addr.String()
}
