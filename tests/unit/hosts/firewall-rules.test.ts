/**
 * The firewall as data (F1, F2, F3): pure rule functions, no Pulumi runtime.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
    ANYWHERE,
    LIGHTSAIL_NOBODY,
    digitalOceanInboundRules,
    digitalOceanOutboundRules,
    inboundRules,
    lightsailPortInfos,
    outboundRules,
    splitCidrs,
    type FirewallRule,
} from "../../../components/hosts/firewall-rules";
import { CLOUDFLARE, DO_HOST, LIGHTSAIL_HOST, LOCKDOWN_EXTRA, stackConfig } from "./support";

/** "tcp/22 <- 203.0.113.7/32,2001:db8:1::/48" — one line per rule, easy to compare. */
function summary(rules: readonly FirewallRule[]): string[] {
    return rules.map((r) => `${r.protocol}/${r.port} <- ${[...r.peers.ipv4, ...r.peers.ipv6].join(",")}`);
}

const WORLD = "0.0.0.0/0,::/0";
const CF = [...CLOUDFLARE.ipv4, ...CLOUDFLARE.ipv6].join(",");

void describe("inbound rules (F1)", () => {
    const cases: { name: string; host: Record<string, unknown>; extra?: Record<string, unknown>; cloudflare?: boolean; expected: string[] }[] = [
        {
            name: "default: SSH from admin CIDRs, 80/443 from the world (IPv4 and IPv6), nothing else",
            host: DO_HOST,
            expected: ["tcp/22 <- 203.0.113.7/32,2001:db8:1::/48", `tcp/80 <- ${WORLD}`, `tcp/443 <- ${WORLD}`],
        },
        {
            name: "origin lockdown: 80/443 only from Cloudflare's ranges",
            host: { ...DO_HOST, originLockdown: true },
            extra: LOCKDOWN_EXTRA,
            cloudflare: true,
            expected: ["tcp/22 <- 203.0.113.7/32,2001:db8:1::/48", `tcp/80 <- ${CF}`, `tcp/443 <- ${CF}`],
        },
        {
            name: "Chronos: PostgreSQL's public port only from the listed CIDRs",
            host: LIGHTSAIL_HOST,
            extra: { database: { allowedCidrs: ["76.76.21.0/24", "198.51.100.9/32"], publicPort: 15432 } },
            expected: ["tcp/22 <- 203.0.113.7/32", `tcp/80 <- ${WORLD}`, `tcp/443 <- ${WORLD}`, "tcp/15432 <- 76.76.21.0/24,198.51.100.9/32"],
        },
        {
            name: "SSH from anywhere only with the explicit opt-in",
            host: { ...DO_HOST, sshAllowedCidrs: ["0.0.0.0/0", "::/0"], allowSshFromAnywhere: true },
            expected: [`tcp/22 <- ${WORLD}`, `tcp/80 <- ${WORLD}`, `tcp/443 <- ${WORLD}`],
        },
    ];
    for (const c of cases) {
        void test(c.name, () => {
            const config = stackConfig(c.host, c.extra);
            assert.deepEqual(summary(inboundRules(config, c.cloudflare ? CLOUDFLARE : undefined)), c.expected);
        });
    }

    void test("F1: never 5432, 6379 or an app port by default (database and redis enabled, apps on 3000/8000)", () => {
        const config = stackConfig(DO_HOST);
        assert.equal(config.database.enabled, true);
        assert.equal(config.redis.enabled, true);
        const ports = inboundRules(config).map((r) => r.port);
        for (const forbidden of [5432, 6379, 3000, 8000]) {
            assert.ok(!ports.includes(forbidden), `port ${forbidden} must not be open`);
        }
        assert.deepEqual(ports, [22, 80, 443]);
    });

    void test("F1: origin lockdown without Cloudflare's ranges refuses to build rules", () => {
        const config = stackConfig({ ...DO_HOST, originLockdown: true }, LOCKDOWN_EXTRA);
        assert.throws(() => inboundRules(config), /originLockdown/);
        assert.throws(() => inboundRules(config, { ipv4: [], ipv6: [] }), /originLockdown/);
    });

    void test("F1: Cloudflare's ranges are ignored when origin lockdown is off", () => {
        const rules = inboundRules(stackConfig(DO_HOST), CLOUDFLARE);
        assert.deepEqual(rules.find((r) => r.port === 443)?.peers, ANYWHERE);
    });
});

void describe("outbound rules (F2)", () => {
    void test("F2: DNS tcp+udp, HTTP/HTTPS, NTP and SMTP submission, to 0.0.0.0/0 and ::/0, nothing else", () => {
        assert.deepEqual(summary(outboundRules()), [
            `udp/53 <- ${WORLD}`,
            `tcp/53 <- ${WORLD}`,
            `tcp/80 <- ${WORLD}`,
            `tcp/443 <- ${WORLD}`,
            `udp/123 <- ${WORLD}`,
            `tcp/587 <- ${WORLD}`,
            `tcp/465 <- ${WORLD}`,
        ]);
    });

    void test("F2: DigitalOcean outbound rules name their destinations explicitly", () => {
        assert.deepEqual(digitalOceanOutboundRules(outboundRules())[0], { protocol: "udp", portRange: "53", destinationAddresses: ["0.0.0.0/0", "::/0"] });
    });
});

void describe("provider translations", () => {
    void test("F1: DigitalOcean inbound rules carry both address families in sourceAddresses", () => {
        assert.deepEqual(digitalOceanInboundRules(inboundRules(stackConfig(DO_HOST))), [
            { protocol: "tcp", portRange: "22", sourceAddresses: ["203.0.113.7/32", "2001:db8:1::/48"] },
            { protocol: "tcp", portRange: "80", sourceAddresses: ["0.0.0.0/0", "::/0"] },
            { protocol: "tcp", portRange: "443", sourceAddresses: ["0.0.0.0/0", "::/0"] },
        ]);
    });

    void test("F3: every Lightsail port has explicit cidrs AND ipv6Cidrs; a missing family admits nobody (loopback), never the default 'anywhere'", () => {
        const config = stackConfig(LIGHTSAIL_HOST, { database: { allowedCidrs: ["2001:db8:77::/48"] } });
        assert.deepEqual(lightsailPortInfos(inboundRules(config)), [
            { protocol: "tcp", fromPort: 22, toPort: 22, cidrs: ["203.0.113.7/32"], ipv6Cidrs: ["::1/128"] },
            { protocol: "tcp", fromPort: 80, toPort: 80, cidrs: ["0.0.0.0/0"], ipv6Cidrs: ["::/0"] },
            { protocol: "tcp", fromPort: 443, toPort: 443, cidrs: ["0.0.0.0/0"], ipv6Cidrs: ["::/0"] },
            { protocol: "tcp", fromPort: 5432, toPort: 5432, cidrs: ["127.0.0.1/32"], ipv6Cidrs: ["2001:db8:77::/48"] },
        ]);
        assert.deepEqual(LIGHTSAIL_NOBODY, { ipv4: ["127.0.0.1/32"], ipv6: ["::1/128"] });
    });

    void test("splitCidrs keeps order within each family", () => {
        assert.deepEqual(splitCidrs(["2001:db8::/32", "10.0.0.0/8", "::/0", "0.0.0.0/0"]), { ipv4: ["10.0.0.0/8", "0.0.0.0/0"], ipv6: ["2001:db8::/32", "::/0"] });
    });
});
