/**
 * Recording mocks for Pulumi unit tests. Every registered resource is captured
 * with its type, name and inputs; tests look resources up and assert on inputs.
 * Unknown `call` (invoke) tokens throw, so an unexpected data-source lookup
 * fails the test instead of returning nothing.
 */
import * as pulumi from "@pulumi/pulumi";

export interface RecordedResource {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    id: string;
}

export type CallHandler = (args: pulumi.runtime.MockCallArgs) => Record<string, unknown>;

export class RecordingMocks implements pulumi.runtime.Mocks {
    readonly resources: RecordedResource[] = [];
    private readonly calls: Record<string, CallHandler>;

    constructor(calls: Record<string, CallHandler> = {}) {
        this.calls = calls;
    }

    newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
        const id = `${args.name}-id`;
        const inputs = args.inputs as Record<string, unknown>;
        this.resources.push({ type: args.type, name: args.name, inputs, id });
        return { id, state: { ...inputs, ...fakeOutputs(args.type, args.name, inputs) } };
    }

    call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        const handler = this.calls[args.token];
        if (!handler) {
            throw new Error(`unexpected invoke ${args.token} (add a handler to RecordingMocks if it is intended)`);
        }
        return handler(args);
    }

    /** All resources of a type token, e.g. "digitalocean:index/droplet:Droplet". */
    ofType(type: string): RecordedResource[] {
        return this.resources.filter((r) => r.type === type);
    }

    /** The one resource of a type (and name, when given); throws otherwise. */
    one(type: string, name?: string): RecordedResource {
        const found = this.ofType(type).filter((r) => name === undefined || r.name === name);
        if (found.length !== 1) {
            const names = this.ofType(type).map((r) => r.name).join(", ") || "none";
            throw new Error(`expected exactly one ${type}${name ? ` named ${name}` : ""}, found ${found.length} (${names})`);
        }
        return found[0];
    }

    types(): string[] {
        return [...new Set(this.resources.map((r) => r.type))].sort();
    }

    reset(): void {
        this.resources.length = 0;
    }
}

/** Provider-computed outputs that programs read, with plausible fake values. */
function fakeOutputs(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
    const args = { name, inputs };
    switch (type) {
        case "digitalocean:index/droplet:Droplet":
            return { ipv4Address: "203.0.113.10", ipv6Address: "2001:db8::10", urn: `do:droplet:${args.name}` , dropletUrn: `do:droplet:${args.name}` };
        case "digitalocean:index/reservedIp:ReservedIp":
            return { ipAddress: "203.0.113.20", urn: `do:floatingip:${args.name}` };
        case "digitalocean:index/volume:Volume":
            return { volumeUrn: `do:volume:${args.name}` };
        case "aws:lightsail/staticIp:StaticIp":
            return { ipAddress: "198.51.100.20", arn: `arn:aws:lightsail:::StaticIp/${args.name}` };
        case "aws:lightsail/instance:Instance":
            return { publicIpAddress: "198.51.100.10", ipv6Addresses: ["2001:db8::20"], username: "ubuntu", arn: `arn:aws:lightsail:eu-central-1:123456789012:Instance/${args.name}-0b6c2d4e` };
        case "aws:s3/bucket:Bucket":
        case "aws:s3/bucketV2:BucketV2":
            return { arn: `arn:aws:s3:::${(typeof args.inputs.bucket === "string" ? args.inputs.bucket : args.name)}`, bucket: args.inputs.bucket ?? args.name };
        case "aws:iam/user:User":
            return { arn: `arn:aws:iam::123456789012:user/${(typeof args.inputs.name === "string" ? args.inputs.name : args.name)}` };
        case "aws:iam/accessKey:AccessKey":
            return { secret: "fake-secret-access-key-0123456789abcdef", id: "AKIAFAKEFAKEFAKE" };
        case "random:index/randomPassword:RandomPassword":
            return { result: `generated-${args.name}-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0` };
        case "tls:index/privateKey:PrivateKey":
            return {
                privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\nfake-${args.name}\n-----END OPENSSH PRIVATE KEY-----\n`,
                privateKeyPem: `-----BEGIN PRIVATE KEY-----\nfake-${args.name}\n-----END PRIVATE KEY-----\n`,
                publicKeyOpenssh: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyFor${args.name.replace(/[^A-Za-z0-9]/g, "")} \n`,
            };
        case "tls:index/certRequest:CertRequest":
            return { certRequestPem: "-----BEGIN CERTIFICATE REQUEST-----\nfake\n-----END CERTIFICATE REQUEST-----\n" };
        case "tls:index/selfSignedCert:SelfSignedCert":
        case "tls:index/locallySignedCert:LocallySignedCert":
            return { certPem: `-----BEGIN CERTIFICATE-----\nfake-${args.name}\n-----END CERTIFICATE-----\n` };
        case "cloudflare:index/originCaCertificate:OriginCaCertificate":
            return { certificate: "-----BEGIN CERTIFICATE-----\nfake-origin\n-----END CERTIFICATE-----\n" };
        default:
            return {};
    }
}

/** Installs recording mocks for one test file and returns them. */
export async function installMocks(
    config: Record<string, unknown> = {},
    calls: Record<string, CallHandler> = {},
    opts: { project?: string; stack?: string; preview?: boolean; plaintextKeys?: string[] } = {},
): Promise<RecordingMocks> {
    const mocks = new RecordingMocks(calls);
    const all: Record<string, string> = {};
    for (const [k, v] of Object.entries(config)) {
        all[k] = typeof v === "string" ? v : JSON.stringify(v);
    }
    // As the engine does for values set with `pulumi config set --secret`: the
    // keys holding secrets are listed as secret, unless a test says otherwise.
    const secretKeys = ["onebox:secrets", "onebox:sshPrivateKey"].filter((k) => k in all && !(opts.plaintextKeys ?? []).includes(k));
    pulumi.runtime.setAllConfig(all, secretKeys);
    await pulumi.runtime.setMocks(mocks, opts.project ?? "onebox", opts.stack ?? "test", opts.preview ?? false);
    return mocks;
}

/** Resolves an Output (or plain value) so tests can assert on it. */
export function unwrap<T>(value: pulumi.Input<T>): Promise<T> {
    return new Promise((resolve) => {
        pulumi.output(value).apply((v) => {
            resolve(v as T);
            return v;
        });
    });
}

/** Whether an Output is marked secret. */
export function isSecret(value: pulumi.Output<unknown>): Promise<boolean> {
    return pulumi.isSecret(value);
}
