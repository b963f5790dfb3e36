/**
 * Shared fixtures for the host tests: validated configs, recording mocks that
 * also emulate what the engine or provider would compute (numeric droplet
 * ids, autonamed Lightsail names). Resource options are recorded by
 * tests/helpers/options-recorder.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import { spawnSync } from "node:child_process";
import { validateConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { RecordingMocks, type CallHandler } from "../../helpers/mocks";
import { EXISTING_DEPLOY_KEY } from "../../helpers/fixtures";
import { FAKE_CLOUDFLARE_RANGES, GET_IP_RANGES, ipRangesHandler } from "../../helpers/cloudflare";

export const ADMIN_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz3ZbUeGfyTNgQyX0yhl6bI5bqyS2m0yqVqjSWbqzKQ admin@example.com";

/** Cloudflare's ranges as the mocked `getIpRanges` returns them. */
export const CLOUDFLARE = FAKE_CLOUDFLARE_RANGES;

/** Mock handler for Cloudflare's IP ranges data source; counts its calls. */
export function cloudflareCalls(): { calls: Record<string, CallHandler>; count: () => number } {
    let n = 0;
    return { calls: { [GET_IP_RANGES]: ipRangesHandler(() => (n += 1)) }, count: () => n };
}

type Raw = Record<string, unknown>;

/**
 * A validated stack config. `host` replaces the host section; `extra` adds or
 * replaces other top-level keys. Services listen on 3000 and 8000 so tests
 * can check those ports never reach the firewall.
 */
export function stackConfig(host: Raw, extra: Raw = {}): StackConfig {
    const raw: Raw = {
        app: { name: "finances", environment: "prod" },
        host,
        dns: { provider: "cloudflare", zone: "example.com", proxied: true },
        tls: { mode: "acme", acmeEmail: "ops@example.com" },
        services: {
            web: { image: "ghcr.io/example/web:1.0.0", port: 3000, health: { path: "/health" } },
            api: { image: "ghcr.io/example/api:1.0.0", port: 8000, health: { path: "/health" }, database: true, redis: true },
        },
        routes: [
            { host: "app.example.com", service: "web" },
            { host: "api.example.com", service: "api" },
        ],
        redis: { enabled: true },
        ...(host.provider === "existing" ? { sshPrivateKey: EXISTING_DEPLOY_KEY } : {}),
        ...extra,
    };
    return validateConfig(raw).config;
}

/** Settings that turn origin lockdown on (it requires Cloudflare origin certificates). */
export const LOCKDOWN_EXTRA: Raw = { tls: { mode: "cloudflare-origin" } };

export const DO_HOST: Raw = {
    provider: "digitalocean",
    region: "fra1",
    size: "s-1vcpu-1gb",
    os: "ubuntu-22.04",
    sshAllowedCidrs: ["203.0.113.7/32", "2001:db8:1::/48"],
    sshPublicKeys: [ADMIN_KEY],
    tags: ["team-a"],
};

export const LIGHTSAIL_HOST: Raw = {
    provider: "lightsail",
    region: "eu-central-1",
    zone: "b",
    bundle: "small_3_0",
    os: "debian-12",
    sshAllowedCidrs: ["203.0.113.7/32"],
    sshPublicKeys: [ADMIN_KEY],
};

export const EXISTING_HOST: Raw = {
    provider: "existing",
    address: "198.51.100.77",
    port: 2222,
    user: "ops",
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExistingServerHostKey root@server",
    dataPath: "/srv/data",
    dataDevice: "/dev/sdb",
    sshAllowedCidrs: ["203.0.113.7/32"],
};

/** Numeric id the mocked DigitalOcean API gives the droplet (resource ids are numbers there). */
export const DROPLET_ID = 424242;

/**
 * RecordingMocks plus the values the real engine/provider would compute and
 * the shared mocks leave out: DigitalOcean droplet ids are numeric, reserved
 * IPs have a URN, and Lightsail names are autonamed from the resource name.
 */
export class HostMocks extends RecordingMocks {
    newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
        const result = super.newResource(args);
        const inputs = args.inputs as Record<string, unknown>;
        switch (args.type) {
            case "digitalocean:index/droplet:Droplet":
                return { id: String(DROPLET_ID), state: result.state };
            case "digitalocean:index/reservedIp:ReservedIp":
                return { ...result, state: { ...result.state, reservedIpUrn: `do:reservedip:${String(result.state.ipAddress)}` } };
            case "aws:lightsail/instance:Instance":
            case "aws:lightsail/keyPair:KeyPair":
            case "aws:lightsail/disk:Disk":
            case "aws:lightsail/staticIp:StaticIp":
                return { ...result, state: { ...result.state, name: inputs.name ?? `${args.name}-autoname` } };
            default:
                return result;
        }
    }
}

/** Installs {@link HostMocks} for this test file. */
export async function installHostMocks(calls: Record<string, CallHandler> = {}): Promise<HostMocks> {
    const mocks = new HostMocks(calls);
    pulumi.runtime.setAllConfig({});
    await pulumi.runtime.setMocks(mocks, "onebox", "test", false);
    return mocks;
}

const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

/**
 * A resource input as the mock monitor receives it: secret inputs arrive
 * wrapped in Pulumi's secret signature, which is how the engine knows to
 * encrypt them in state.
 */
export function inputSecret(value: unknown): { secret: boolean; value: unknown } {
    if (value !== null && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG) {
        return { secret: true, value: (value as Record<string, unknown>).value };
    }
    return { secret: false, value };
}

/** Lets pending registrations finish: waits until no new resource appears for a while. */
export async function settle(mocks: RecordingMocks): Promise<void> {
    let last = -1;
    let stable = 0;
    while (stable < 25) {
        await new Promise((r) => setImmediate(r));
        if (mocks.resources.length === last) {
            stable += 1;
        } else {
            stable = 0;
            last = mocks.resources.length;
        }
    }
}

/** Runs ShellCheck on a script; undefined when shellcheck is not installed. */
export function shellcheck(script: string, shell: "bash" | "sh"): { status: number; output: string } | undefined {
    const r = spawnSync("shellcheck", ["--shell", shell, "--severity", "style", "-"], { input: script, encoding: "utf8" });
    if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") {
        return undefined;
    }
    return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}` };
}

/** The text between `<<'DELIM'` and `DELIM` in a rendered script. */
export function heredoc(script: string, delimiter: string): string {
    const start = script.indexOf(`<<'${delimiter}'\n`);
    if (start < 0) {
        throw new Error(`no here-document ${delimiter}`);
    }
    const bodyStart = script.indexOf("\n", start) + 1;
    const end = script.indexOf(`\n${delimiter}\n`, bodyStart - 1);
    if (end < 0) {
        throw new Error(`here-document ${delimiter} is not terminated`);
    }
    return script.slice(bodyStart, end + 1);
}
