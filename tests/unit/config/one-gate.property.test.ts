/**
 * One gate: every configuration the schema accepts renders, and the settings it
 * renders for the host pass the host scripts' own validation
 * (`bootstrap.sh` check_settings through `--render ufw-rules`, the backup
 * scripts' validate_env through `backup.sh --check-settings`). So no value can
 * be "validated, then refused later" on a server after cloud resources exist.
 *
 * fast-check generates configurations around the three fixture stacks, with
 * hostile values where the renderers and host scripts are strict: CIDR lists
 * (halves, world ranges, odd spellings), CSP and env values with quotes and
 * control characters, hook URLs, shared volume names, memory limits. The seed
 * is fixed (ONEBOX_PROPERTY_SEED overrides it) so a CI failure reproduces.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { ConfigError, validateConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { buildSteps, renderBackupEnv, renderBootstrapEnv } from "../../../components/provisioning/steps";
import { substituteSecrets, referencedSecrets } from "../../../components/provisioning/placeholders";
import { renderContext } from "../../../scripts/render";
import { FAKE_CLOUDFLARE_RANGES } from "../../helpers/cloudflare";
import { shippedBootstrap } from "../../helpers/bootstrap-script";
import { digitalOceanRaw, existingRaw, lightsailRaw, withValue, type Raw } from "../../helpers/fixtures";

const ROOT = path.resolve(__dirname, "../../..");
const SCRIPTS = path.join(ROOT, "scripts", "host");
const SEED = Number(process.env.ONEBOX_PROPERTY_SEED ?? 20261129);
const RUNS = 150;
const VOLUME_RUNS = 60;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-gate-"));
/** bootstrap.sh as the step ships it (assembled with its modules). */
const BOOTSTRAP = shippedBootstrap(work);

// ----------------------------------------------------------------- generators
const octet = fc.integer({ min: 0, max: 255 });
const ipv4Cidr = fc.tuple(octet, octet, octet, octet, fc.integer({ min: 0, max: 32 })).map(([a, b, c, d, bits]) => {
    const n = (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) & (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}/${bits}`;
});
const ipv6Cidr = fc.constantFrom("2001:db8::/32", "2000::/3", "::/0", "::0/0", "2a00::/16", "fd00::/8", "2001:db8:1::/48", "3000::/4", "2000::/4");
const oddCidr = fc.constantFrom("0.0.0.0/00", "0.0.0.0/1", "128.0.0.0/1", "010.0.0.0/8", "10.1/16", "::ffff:0.0.0.0/96", "203.0.113.7", "203.0.113.7/33");
/** Mostly narrow, valid networks; sometimes anything. */
const narrowV4 = fc.tuple(octet, octet, octet, fc.integer({ min: 24, max: 32 })).map(([a, b, c, bits]) => `${a === 10 ? 11 : a}.${b}.${c}.0/${Math.min(bits, 24)}`);
const cidr = fc.oneof({ weight: 12, arbitrary: narrowV4 }, { weight: 2, arbitrary: ipv4Cidr }, { weight: 2, arbitrary: ipv6Cidr }, { weight: 1, arbitrary: oddCidr });
const cidrList = fc.array(cidr, { minLength: 1, maxLength: 3 });
/** A hostile value one time in `1 + calm` (weights keep enough configurations valid). */
function sometimes<T>(calm: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>, weight = 6): fc.Arbitrary<T> {
    return fc.oneof({ weight, arbitrary: calm }, { weight: 1, arbitrary: hostile });
}

/** Text with the characters renderers and host scripts care about. */
const nasty = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc.string({ unit: "grapheme", maxLength: 12 }),
    fc.constantFrom("it's", "a\nb", "tab\there", "$(id)", "`id`", "\"quoted\"", "back\\slash", "{brace}", "ok-value", "#not-a-comment", "x\u0000y", "ümlaut"),
);
const envName = fc.oneof(fc.constantFrom("LOG_LEVEL", "FEATURE_X", "bad-name", "lower", "_OK"), fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,8}$/));
const hookUrl = fc.oneof(
    fc.webUrl({ validSchemes: ["https", "http"] }),
    fc.constantFrom("https://hc.example.com/ping/abc", "http://10.0.0.5/alert", "https://alerts.example.com/x'y", "http://alerts.example.com/x", "https://a.example.com/a b"),
);
const volume = fc.record({
    name: fc.constantFrom("uploads", "media", "cache"),
    mountPath: fc.constantFrom("/data", "/data/uploads", "/srv/media", "/", "/data/../etc"),
    backup: fc.option(fc.boolean(), { nil: undefined }),
    readOnly: fc.option(fc.boolean(), { nil: undefined }),
});
/**
 * Stack volumes (top-level `volumes`): when on, every name the services mount is declared
 * (with one backup flag and owner), sometimes with an extra declaration, and the mounts
 * lose their `backup` unless kept (which the schema refuses).
 */
const stackVolumes = fc.record({
    on: fc.boolean(),
    backup: fc.boolean(),
    owner: fc.constantFrom(undefined, "10001:10001", "1000:1000", "0:0", "www-data", "10001"),
    extra: sometimes(fc.constant(undefined), fc.constantFrom("Bad_Name", "orphan") as fc.Arbitrary<string | undefined>, 3),
    keepBackupOnMounts: sometimes(fc.constant(false), fc.constant(true), 4),
});

interface Variation {
    base: 0 | 1 | 2;
    ssh: string[];
    sshAnywhere: boolean;
    db: string[];
    dbWide: boolean;
    csp: string | undefined;
    env: [string, string][];
    alert: string | undefined;
    heartbeat: string | undefined;
    plainHooks: boolean;
    apiVolumes: { name: string; mountPath: string; backup?: boolean; readOnly?: boolean }[];
    webVolumes: { name: string; mountPath: string; backup?: boolean; readOnly?: boolean }[];
    stackVolumes: { on: boolean; backup: boolean; owner: string | undefined; extra: string | undefined; keepBackupOnMounts: boolean };
    memory: number;
    tables: string[];
}

const variation: fc.Arbitrary<Variation> = fc.record({
    base: fc.constantFrom(0 as const, 1 as const, 2 as const),
    ssh: cidrList,
    sshAnywhere: fc.boolean(),
    db: fc.array(cidr, { maxLength: 2 }),
    dbWide: fc.boolean(),
    csp: sometimes(fc.constant(undefined), nasty as fc.Arbitrary<string | undefined>, 4),
    env: fc.array(fc.tuple(sometimes(fc.constantFrom("LOG_LEVEL", "FEATURE_X", "_OK"), envName), sometimes(fc.stringMatching(/^[a-zA-Z0-9 ,.:/=-]{0,20}$/), nasty)), { maxLength: 3 }),
    alert: sometimes(fc.constant(undefined), hookUrl as fc.Arbitrary<string | undefined>, 3),
    heartbeat: sometimes(fc.constant(undefined), hookUrl as fc.Arbitrary<string | undefined>, 3),
    plainHooks: fc.boolean(),
    apiVolumes: sometimes(fc.constant([]), fc.array(volume, { maxLength: 2 }), 2),
    webVolumes: sometimes(fc.constant([]), fc.array(volume, { maxLength: 1 }), 2),
    stackVolumes,
    memory: sometimes(fc.constantFrom(64, 256, 512), fc.constantFrom(1024, 3000)),
    tables: sometimes(fc.constant(["items"]), fc.array(fc.constantFrom("items", "public.orders", "x;drop", "Bad"), { maxLength: 2 })),
});

/** A variation that changes nothing hostile: the DigitalOcean fixture as it is. */
const calm: Variation = {
    base: 0,
    ssh: ["203.0.113.0/24"],
    sshAnywhere: false,
    db: [],
    dbWide: false,
    csp: undefined,
    env: [],
    alert: undefined,
    heartbeat: undefined,
    plainHooks: false,
    apiVolumes: [],
    webVolumes: [],
    stackVolumes: { on: false, backup: true, owner: undefined, extra: undefined, keepBackupOnMounts: false },
    memory: 256,
    tables: ["items"],
};

function configOf(v: Variation): Raw {
    let raw = [digitalOceanRaw, lightsailRaw, existingRaw][v.base]();
    const api = v.base === 2 ? "backend" : "api";
    const web = v.base === 0 ? "web" : v.base === 2 ? "frontend" : undefined;
    raw = withValue(raw, "host.sshAllowedCidrs", v.ssh);
    raw = withValue(raw, "host.allowSshFromAnywhere", v.sshAnywhere);
    if (v.base === 1) {
        raw = withValue(raw, "database.allowedCidrs", v.db);
        raw = withValue(raw, "database.allowWideCidrs", v.dbWide);
    }
    if (v.csp !== undefined) raw = withValue(raw, "proxy.contentSecurityPolicy", v.csp);
    raw = withValue(raw, `services.${api}.env`, Object.fromEntries(v.env));
    const sv = v.stackVolumes;
    const mounts = (list: Variation["apiVolumes"]) => (sv.on && !sv.keepBackupOnMounts ? list.map((m) => ({ ...m, backup: undefined })) : list);
    raw = withValue(raw, `services.${api}.volumes`, mounts(v.apiVolumes));
    raw = withValue(raw, `services.${api}.memoryMb`, v.memory);
    if (web) raw = withValue(raw, `services.${web}.volumes`, mounts(v.webVolumes));
    if (sv.on) {
        const names = [...new Set([...v.apiVolumes, ...(web ? v.webVolumes : [])].map((m) => m.name)), ...(sv.extra ? [sv.extra] : [])];
        raw = withValue(raw, "volumes", Object.fromEntries(names.map((n) => [n, { backup: sv.backup, owner: sv.owner }])));
    }
    raw = withValue(raw, "backups.alertUrl", v.alert);
    raw = withValue(raw, "backups.heartbeatUrl", v.heartbeat);
    raw = withValue(raw, "backups.allowPlainHttpHooks", v.plainHooks);
    raw = withValue(raw, "backups.drill", { tables: v.tables });
    return raw;
}

// ------------------------------------------------------------ host validation
/** Fills every secret placeholder with a harmless stand-in, as the secrets step would with real values. */
function withStandIns(text: string): string {
    return substituteSecrets(text, Object.fromEntries(referencedSecrets(text).map((n) => [n, `stand-in-${n.toLowerCase()}-Q7x`])));
}

function hostValidation(config: StackConfig, n: number): string[] {
    const problems: string[] = [];
    const ctx = renderContext(config, SCRIPTS, "/dev/sdb", undefined, FAKE_CLOUDFLARE_RANGES);
    buildSteps(config, ctx); // every renderer: compose, Caddyfile, env files, units
    const bootstrapEnv = path.join(work, `bootstrap-${n}.env`);
    fs.writeFileSync(bootstrapEnv, withStandIns(renderBootstrapEnv(config, ctx)), { mode: 0o600 });
    const b = spawnSync("bash", [BOOTSTRAP.path, "--render", "ufw-rules"], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ONEBOX_BOOTSTRAP_ENV: bootstrapEnv, TMPDIR: work },
        encoding: "utf8",
        timeout: 30_000,
    });
    if (b.status !== 0) problems.push(`bootstrap.sh refused its settings: ${b.stderr.trim()}`);
    if (config.backups?.enabled) {
        const backupEnv = path.join(work, `backup-${n}.env`);
        fs.writeFileSync(backupEnv, withStandIns(renderBackupEnv(config, ctx)), { mode: 0o600 });
        const r = spawnSync("bash", [path.join(SCRIPTS, "backup", "backup.sh"), "--check-settings"], {
            env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ONEBOX_BACKUP_ENV: backupEnv, TMPDIR: work },
            encoding: "utf8",
            timeout: 30_000,
        });
        if (r.status !== 0) problems.push(`backup.sh refused its settings: ${r.stderr.trim()}`);
    }
    return problems;
}

describe("one gate: what the schema accepts, the renderers and host scripts accept", () => {
    it(`${RUNS} generated configurations (seed ${SEED})`, () => {
        let accepted = 0;
        let rejected = 0;
        let acceptedStackVolumes = 0;
        let n = 0;
        fc.assert(
            fc.property(variation, (v) => {
                let config: StackConfig;
                try {
                    config = validateConfig(configOf(v)).config;
                } catch (e) {
                    if (!(e instanceof ConfigError)) throw e;
                    rejected++;
                    return true;
                }
                accepted++;
                if (Object.keys(config.volumes).length > 0) acceptedStackVolumes++;
                const problems = hostValidation(config, n++);
                assert.deepEqual(problems, []);
                return true;
            }),
            { seed: SEED, numRuns: RUNS },
        );
        // The property says nothing if the generator only makes rejected configurations.
        assert.ok(accepted >= RUNS / 5, `only ${accepted} of ${RUNS} generated configurations were valid`);
        assert.ok(rejected >= RUNS / 5, `only ${rejected} of ${RUNS} were invalid: the generator is too tame`);
        assert.ok(acceptedStackVolumes >= 1, `no accepted configuration had stack volumes`);
    });

    // Volumes only, on a calm stack: enough accepted configurations with stack volumes
    // to show the schema refuses whatever the backup scripts would (BACKUP_DIRS names).
    it(`${VOLUME_RUNS} generated volume layouts (seed ${SEED})`, () => {
        let accepted = 0;
        let rejected = 0;
        let n = 1000;
        const mount = fc.record({
            name: fc.constantFrom("uploads", "media", "cache"),
            mountPath: fc.constantFrom("/data", "/data/uploads", "/srv/media", "/srv/cache", "/srv/x"),
            backup: fc.constant(undefined),
            readOnly: fc.option(fc.boolean(), { nil: undefined }),
        });
        const mounts = (max: number): fc.Arbitrary<Variation["apiVolumes"]> => fc.uniqueArray(mount, { minLength: 1, maxLength: max, selector: (m) => m.name });
        const shared = fc.record({
            on: fc.constant(true),
            backup: fc.boolean(),
            owner: fc.constantFrom(undefined, undefined, "10001:10001", "10001:10001", "1000:1000", "0:0", "www-data"),
            extra: sometimes(fc.constant(undefined), fc.constantFrom("Bad_Name", "orphan") as fc.Arbitrary<string | undefined>, 4),
            keepBackupOnMounts: sometimes(fc.constant(false), fc.constant(true), 8),
        });
        const layout = fc.record({ api: mounts(3), web: sometimes(fc.constant([] as Variation["apiVolumes"]), mounts(2), 2), shared });
        fc.assert(
            fc.property(layout, (l) => {
                const raw = configOf({ ...calm, apiVolumes: l.api, webVolumes: l.web, stackVolumes: l.shared });
                let config: StackConfig;
                try {
                    config = validateConfig(raw).config;
                } catch (e) {
                    if (!(e instanceof ConfigError)) throw e;
                    rejected++;
                    return true;
                }
                accepted++;
                assert.ok(Object.keys(config.volumes).length > 0);
                assert.deepEqual(hostValidation(config, n++), []);
                return true;
            }),
            { seed: SEED, numRuns: VOLUME_RUNS },
        );
        assert.ok(accepted >= VOLUME_RUNS / 10, `only ${accepted} of ${VOLUME_RUNS} volume layouts were valid`);
        assert.ok(rejected >= VOLUME_RUNS / 10, `only ${rejected} of ${VOLUME_RUNS} volume layouts were invalid: the generator is too tame`);
        fs.rmSync(work, { recursive: true, force: true });
    });
});
