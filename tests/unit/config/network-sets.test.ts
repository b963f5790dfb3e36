/**
 * Network sources are judged as sets (F1): parsing and normalising CIDRs, the
 * union of a list against "the whole internet", the width of a list, and the
 * server-memory table used to check memory limits.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DropletSlug } from "@pulumi/digitalocean/types/enums";
import { addressCount, anywhereIn, dropletMemoryMb, isPrivateHost, normaliseCidr, parseCidr, parsedCidrs, WIDE_LIMIT } from "../../../components/config/validators";
import { validateConfig } from "../../../components/config/load";
import { digitalOceanRaw, lightsailRaw, withValue } from "../../helpers/fixtures";

describe("CIDRs: parsed, normalised, refused when ambiguous", () => {
    const table: [string, string | RegExp][] = [
        ["::0/0", "::/0"],
        ["0.0.0.0/00", "0.0.0.0/0"],
        ["2001:DB8:0:0::/32", "2001:db8::/32"],
        ["203.0.113.7/32", "203.0.113.7/32"],
        ["010.0.0.0/8", /four decimal numbers/],
        ["0x0a.0.0.0/8", /four decimal numbers/],
        ["10.1/16", /four decimal numbers/],
        ["::ffff:10.0.0.0/104", /IPv4-mapped/],
        ["10.0.0.1/8", /did you mean "10\.0\.0\.0\/8"/],
        ["10.0.0.0/33", /not a valid CIDR/],
        ["10.0.0.0/-1", /not a valid CIDR/],
        ["10.0.0.0", /10\.0\.0\.0\/32/],
    ];
    for (const [input, expected] of table) {
        it(`${input} -> ${String(expected)}`, () => {
            const r = parseCidr(input);
            if (typeof expected === "string") {
                assert.equal(typeof r, "object", typeof r === "string" ? r : "");
                assert.equal(normaliseCidr(input), expected);
            } else {
                assert.equal(typeof r, "string");
                assert.match(r as string, expected);
            }
        });
    }

    it("firewalls receive the normalised form", () => {
        const { config } = validateConfig(withValue(lightsailRaw(), "database.allowedCidrs", ["2001:DB8::/48", "198.51.100.0/024"]));
        assert.deepEqual(config.database.allowedCidrs, ["2001:db8::/48", "198.51.100.0/24"]);
    });
});

describe("the union of a list against the whole internet", () => {
    const table: [string[], string[]][] = [
        [["0.0.0.0/0"], ["IPv4"]],
        [["0.0.0.0/1", "128.0.0.0/1"], ["IPv4"]],
        [["0.0.0.0/1", "128.0.0.0/2"], []],
        // every public IPv4 address without 10/8 is still every public address
        [["0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"], ["IPv4"]],
        [["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], []],
        [["2000::/3"], ["IPv6"]],
        [["2000::/4", "3000::/4"], ["IPv6"]],
        [["2000::/4"], []],
        [["::/0", "0.0.0.0/0"], ["IPv4", "IPv6"]],
        [["203.0.113.7/32"], []],
    ];
    for (const [list, expected] of table) {
        it(`${list.join(" + ")} -> ${expected.join(", ") || "not anywhere"}`, () => {
            assert.deepEqual(anywhereIn(parsedCidrs(list)), expected);
        });
    }

    it("width counts the union once (overlaps are not double-counted)", () => {
        assert.equal(addressCount(parsedCidrs(["10.0.0.0/8", "10.1.0.0/16"]), 4), WIDE_LIMIT[4]);
        assert.equal(addressCount(parsedCidrs(["64.0.0.0/9", "96.0.0.0/9", "160.0.0.0/9"]), 4) > WIDE_LIMIT[4], true);
        assert.equal(addressCount(parsedCidrs(["2001:db8::/32"]), 6), WIDE_LIMIT[6]);
    });

    it("a wide list passes with database.allowWideCidrs, and a warning says so", () => {
        const raw = withValue(withValue(lightsailRaw(), "database.allowWideCidrs", true), "database.allowedCidrs", ["64.0.0.0/7"]);
        const { warnings } = validateConfig(raw);
        assert.ok(warnings.some((w) => /database\.allowedCidrs: PostgreSQL is reachable from very wide ranges \(64\.0\.0\.0\/7\)/.test(w)), warnings.join("\n"));
    });

    it("SSH from anywhere passes with the opt-in (halves too)", () => {
        const raw = withValue(withValue(digitalOceanRaw(), "host.allowSshFromAnywhere", true), "host.sshAllowedCidrs", ["0.0.0.0/1", "128.0.0.0/1"]);
        assert.equal(validateConfig(raw).config.host.allowSshFromAnywhere, true);
    });
});

describe("server memory table", () => {
    it("every droplet size slug of the provider is known, except GPU droplets", () => {
        const unknown = Object.values(DropletSlug).filter((s) => dropletMemoryMb(s) === undefined);
        assert.ok(unknown.length > 0 && unknown.every((s) => s.startsWith("gpu-")), unknown.join(", "));
    });

    it("reads memory off the slug", () => {
        assert.equal(dropletMemoryMb("s-1vcpu-512mb-10gb"), 512);
        assert.equal(dropletMemoryMb("s-2vcpu-4gb"), 4096);
        assert.equal(dropletMemoryMb("s-2vcpu-4gb-120gb-intel"), 4096);
        assert.equal(dropletMemoryMb("so1_5-2vcpu-16gb"), 16384);
        assert.equal(dropletMemoryMb("c-4"), 8192);
        assert.equal(dropletMemoryMb("2gb"), 2048);
    });

    it("private hosts for plain-http hooks", () => {
        assert.deepEqual(["10.0.0.5", "[fd00::1]", "127.0.0.1", "localhost", "alerts.example.com", "8.8.8.8"].map(isPrivateHost), [true, true, true, true, false, false]);
    });
});

describe("a misspelt top-level key is reported once", () => {
    it("hosts: one problem, not another under (root)", () => {
        try {
            validateConfig(withValue(digitalOceanRaw(), "hosts", { provider: "digitalocean" }));
            assert.fail("accepted");
        } catch (e) {
            const problems = (e as { problems: { path: string }[] }).problems;
            assert.deepEqual(problems.map((p) => p.path), ["hosts"]);
        }
    });
});
