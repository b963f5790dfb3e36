/**
 * A database-only server (plan 001, Chronos): no routes, so nothing answers on
 * 80/443 and no cloud firewall opens them (F1, F3); PostgreSQL's published port
 * is open to the listed networks only. Checked on the pure rule list and on the
 * firewall resources DigitalOcean and Lightsail hosts register under mocks,
 * created through createHost as the program does.
 */
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHost } from "../../../components/hosts";
import { inboundRules, type FirewallRule } from "../../../components/hosts/firewall-rules";
import type { StackConfig } from "../../../components/config/schema";
import { planOf } from "../../../components/config/plan";
import { CLOUDFLARE, DO_HOST, LIGHTSAIL_HOST, cloudflareCalls, installHostMocks, settle, stackConfig, type HostMocks } from "./support";

const T = {
    doFirewall: "digitalocean:index/firewall:Firewall",
    lightsailPorts: "aws:lightsail/instancePublicPorts:InstancePublicPorts",
};

/** The Chronos stack: PostgreSQL published to the frontend host's range and one admin address, no service, no route. */
function databaseOnly(host: Record<string, unknown>, extra: Record<string, unknown> = {}): StackConfig {
    return stackConfig(host, {
        services: {},
        routes: [],
        redis: { enabled: false },
        database: { allowedCidrs: ["76.76.21.0/24", "198.51.100.9/32"], publicPort: 15432 },
        ...extra,
    });
}

function summary(rules: readonly FirewallRule[]): string[] {
    return rules.map((r) => `${r.protocol}/${r.port} <- ${[...r.peers.ipv4, ...r.peers.ipv6].join(",")}`);
}

interface DoRule {
    protocol: string;
    portRange: string;
    sourceAddresses: string[];
}
interface PortInfo {
    protocol: string;
    fromPort: number;
    toPort: number;
    cidrs: string[];
    ipv6Cidrs: string[];
}

void describe("database-only server: firewall rules (F1)", () => {
    void test("the plan: no proxy, no web ports", () => {
        const plan = planOf(databaseOnly(DO_HOST));
        assert.equal(plan.proxyRuns, false);
        assert.equal(plan.webPortsOpen, false);
        // A stack with routes keeps both (the fixture's default).
        const web = planOf(stackConfig(DO_HOST));
        assert.equal(web.proxyRuns, true);
        assert.equal(web.webPortsOpen, true);
    });

    void test("SSH from the admins and PostgreSQL from the listed networks, nothing else", () => {
        assert.deepEqual(summary(inboundRules({ ...databaseOnly(LIGHTSAIL_HOST), web: false })), [
            "tcp/22 <- 203.0.113.7/32",
            "tcp/15432 <- 76.76.21.0/24,198.51.100.9/32",
        ]);
    });

    void test("origin lockdown without web ports needs no Cloudflare ranges and opens nothing to Cloudflare", () => {
        const config = databaseOnly(DO_HOST);
        const rules = inboundRules({ host: { ...config.host, originLockdown: true }, database: config.database, web: false });
        assert.deepEqual(summary(rules), ["tcp/22 <- 203.0.113.7/32,2001:db8:1::/48", "tcp/15432 <- 76.76.21.0/24,198.51.100.9/32"]);
        // With web ports the same settings still demand the ranges (the guard is not lost).
        assert.throws(() => inboundRules({ host: { ...config.host, originLockdown: true }, database: config.database }), /Cloudflare's IP ranges are missing/);
        assert.equal(inboundRules({ host: { ...config.host, originLockdown: true }, database: config.database }, CLOUDFLARE).filter((r) => r.port === 443).length, 1);
    });

    void test("web defaults to open: a caller that does not say keeps 80/443", () => {
        const config = databaseOnly(DO_HOST);
        assert.deepEqual(
            inboundRules({ host: config.host, database: config.database }).map((r) => r.port),
            [22, 80, 443, 15432],
        );
    });
});

void describe("database-only server: cloud firewalls under mocks (F1, F3)", () => {
    let mocks: HostMocks;
    const cf = cloudflareCalls();

    before(async () => {
        mocks = await installHostMocks(cf.calls);
        createHost("chronos-do", databaseOnly(DO_HOST));
        createHost("chronos-ls", databaseOnly(LIGHTSAIL_HOST));
        // The same stack with a route, for contrast: 80/443 come back.
        createHost("with-web", databaseOnly(LIGHTSAIL_HOST, {
            services: { web: { image: "ghcr.io/example/web:1.0.0", port: 3000, health: { path: "/health" } } },
            routes: [{ host: "app.example.com", service: "web" }],
        }));
        await settle(mocks);
    });

    void test("DigitalOcean: the Cloud Firewall admits SSH and PostgreSQL only, no 80/443", () => {
        const rules = mocks.one(T.doFirewall, "chronos-do-firewall").inputs.inboundRules as DoRule[];
        assert.deepEqual(
            rules.map((r) => `${r.protocol}/${r.portRange} <- ${r.sourceAddresses.join(",")}`),
            ["tcp/22 <- 203.0.113.7/32,2001:db8:1::/48", "tcp/15432 <- 76.76.21.0/24,198.51.100.9/32"],
        );
    });

    void test("Lightsail: InstancePublicPorts declares SSH and PostgreSQL only, each with explicit CIDRs", () => {
        const infos = mocks.one(T.lightsailPorts, "chronos-ls-ports").inputs.portInfos as PortInfo[];
        assert.deepEqual(
            infos.map((p) => `${p.protocol}/${p.fromPort}-${p.toPort} <- ${p.cidrs.join(",")} ${p.ipv6Cidrs.join(",")}`),
            ["tcp/22-22 <- 203.0.113.7/32 ::1/128", "tcp/15432-15432 <- 76.76.21.0/24,198.51.100.9/32 ::1/128"],
        );
        const withWeb = mocks.one(T.lightsailPorts, "with-web-ports").inputs.portInfos as PortInfo[];
        assert.deepEqual(withWeb.map((p) => p.fromPort), [22, 80, 443, 15432]);
    });

    void test("no Cloudflare lookup was needed", () => {
        assert.equal(cf.count(), 0);
    });
});
