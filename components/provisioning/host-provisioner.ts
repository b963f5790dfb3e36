/**
 * Runs the provisioning steps on a host over SSH: one `command.remote.Command`
 * per step, in order, each receiving its rendered script on stdin.
 *
 * - R1: every connection pins the host key.
 * - R2: connections retry while the server is still booting.
 * - R3: the command string is the constant `bash -s` (or `sudo -n bash -s`);
 *   secret values travel only inside stdin, which is a secret Output.
 * - R4: secret steps log nothing and mark stdout/stderr secret.
 * - R5: triggers are content hashes of the rendered scripts; the deploy step's
 *   also include the secrets step's hash, so a changed secret restarts the
 *   containers that read it, and nothing re-runs when nothing changed.
 *
 * With `host.originLockdown` it looks up Cloudflare's published ranges and the
 * bootstrap admits only them to 80/443 on the server itself, which is the only
 * lockdown an existing server gets (it has no cloud firewall). Behind
 * Cloudflare's proxy (`dns.proxied`) the same ranges are the only peers the
 * reverse proxy trusts to name the client (render/caddyfile.ts).
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { ProvisioningInput } from "../config/schema";
import { validateProvisioning } from "../config/load";
import type { Host } from "../hosts/host";
import { cloudflareIpRanges, type IpRanges } from "../hosts/firewall-rules";
import { behindCloudflare } from "./render/caddyfile";
import { loadHostScripts, UPLOAD_IMAGES_SCRIPT, type HostScripts } from "./host-scripts";
import { buildSteps, remoteCommand, renderRelease, renderStepScript, sha256, stepSecrets, type Step, type StepContext, type StepName } from "./steps";

export const HOST_PROVISIONER_TYPE = "onebox:provisioning:HostProvisioner";

/** Failed dials tolerated per connection (a new server may take minutes to accept SSH). */
export const SSH_DIAL_ERROR_LIMIT = 30;
/** Seconds per dial attempt. */
export const SSH_PER_DIAL_TIMEOUT = 20;

export interface HostProvisionerArgs {
    /**
     * What the server runs and how it is hardened: `app` (name, environment),
     * `services`, `routes`, `proxy`, `tls`, `database`, `redis`, `backups`,
     * `deploy`, the secret names (`generatedSecrets`, `secretNames`) and under
     * `host` the server's own hardening (`sshAllowedCidrs`,
     * `allowSshFromAnywhere`, `swapMb`, `originLockdown`). The same settings,
     * names and defaults as the stack configuration (README, "Configuration");
     * settings left out take their defaults. Validated here, before any
     * resource is registered: a problem throws an error naming its path.
     * The onebox program passes `provisioningConfig(config)`.
     *
     * Plain values, not Outputs: they decide which steps exist.
     */
    readonly config: ProvisioningInput;
    /** The server to provision. */
    readonly host: Host;
    /**
     * Values of every secret the steps reference, by name: the app secrets
     * (`generatedSecrets` and `secrets`) and the reserved names
     * POSTGRES_PASSWORD, BACKUP_S3_ACCESS_KEY_ID, BACKUP_S3_SECRET_ACCESS_KEY,
     * TLS_ORIGIN_CERT and TLS_ORIGIN_KEY when the configuration needs them.
     */
    readonly secretValues: Record<string, pulumi.Input<string>>;
    /** Host script contents. @default loadHostScripts() (the files under scripts/host/) */
    readonly scripts?: HostScripts;
    /** Where the bootstrap gets Docker (ONEBOX_DOCKER_SOURCE): "docker", "distro" or "auto" (by OS). @default "auto" */
    readonly dockerAptSource?: StepContext["dockerAptSource"];
}

/** Stands in for Cloudflare's ranges when only the step list's shape is built (TEST-NET-1, never rendered). */
const SHAPE_ONLY_WEB_SOURCES: IpRanges = { ipv4: ["192.0.2.0/24"], ipv6: [] };

type StepResource = command.remote.Command | command.local.Command;

/**
 * Steps whose trigger also holds other steps' script hashes (R5): a changed secret re-runs the
 * secrets step and restarts the containers that read it through the deploy.
 */
export const ALSO_TRIGGERED_BY: Readonly<Partial<Record<StepName, readonly StepName[]>>> = { deploy: ["secrets"] };

export class HostProvisioner extends pulumi.ComponentResource {
    /** One command resource per step, by step name. */
    public readonly steps: Partial<Record<StepName, StepResource>>;
    /**
     * Id of the release the deploy step installs (content hash of compose.yaml, Caddyfile, manifest);
     * known once Cloudflare's ranges are, when the Caddyfile trusts them.
     */
    public readonly releaseId: pulumi.Output<string>;

    constructor(name: string, args: HostProvisionerArgs, opts?: pulumi.ComponentResourceOptions) {
        const { host } = args;
        const config = validateProvisioning(args.config, `HostProvisioner "${name}"`);
        const ctx: StepContext = {
            dataPath: host.dataPath,
            sshUser: host.connection.user,
            sshPort: host.connection.port,
            scripts: args.scripts ?? loadHostScripts(),
            dockerAptSource: args.dockerAptSource,
        };
        // The step list's shape (names, order, secret flags, referenced secrets) does not depend on
        // the data device, which is only known once the host exists; contents are rendered with it.
        // Checked before anything is registered: a missing secret creates nothing.
        // Under origin lockdown the contents also need Cloudflare's ranges, looked up below; the
        // shape does not depend on them, so any non-empty list stands in for it here.
        const lockdown = config.host.originLockdown;
        const trustCloudflare = behindCloudflare(config);
        const shape = buildSteps(config, {
            ...ctx,
            webSources: lockdown ? SHAPE_ONLY_WEB_SOURCES : undefined,
            trustedProxies: trustCloudflare ? SHAPE_ONLY_WEB_SOURCES : undefined,
        });
        requireSecrets(shape, args.secretValues);
        super(HOST_PROVISIONER_TYPE, name, {}, opts);
        const cloudflareRanges = cloudflareIpRanges(lockdown || trustCloudflare, { parent: this });
        const steps = pulumi.all([host.dataDevice, cloudflareRanges]).apply(([dataDevice, cf]) =>
            buildSteps(config, { ...ctx, dataDevice, webSources: lockdown ? cf : undefined, trustedProxies: trustCloudflare ? cf : undefined }),
        );
        const secretValues = pulumi.secret(pulumi.all(args.secretValues));

        const connection = {
            host: host.connection.host,
            port: host.connection.port,
            user: host.connection.user,
            privateKey: pulumi.secret(host.connection.privateKey),
            hostKey: host.connection.hostKey,
            dialErrorLimit: SSH_DIAL_ERROR_LIMIT,
            perDialTimeout: SSH_PER_DIAL_TIMEOUT,
        };

        // A component's own dependsOn does not hold back its children: every step extends it
        // (e.g. DNS records that ACME needs before the proxy starts).
        const inherited = componentDependsOn(opts);
        const resources: Partial<Record<StepName, StepResource>> = {};
        const hashes: Partial<Record<StepName, pulumi.Output<string>>> = {};
        for (const step of shape) {
            const after = step.dependsOn.map((n) => {
                const r = resources[n];
                if (!r) {
                    throw new Error(`step ${step.name} depends on ${n}, which is not an earlier step`);
                }
                return r;
            });
            const dependsOn = [...inherited, ...host.readyResources, ...after];
            let resource: StepResource;
            if (step.upload) {
                resource = uploadImages(`${name}-${step.name}`, step.upload.images, host, { parent: this, dependsOn });
            } else {
                const script = stepScript(steps, step, secretValues);
                const hash = step.secret ? pulumi.secret(script.apply(sha256)) : script.apply(sha256);
                hashes[step.name] = hash;
                const triggers: pulumi.Input<string>[] = [hash];
                for (const other of ALSO_TRIGGERED_BY[step.name] ?? []) {
                    const h = hashes[other];
                    if (h) {
                        triggers.push(h);
                    }
                }
                // A replaced server (same address and host key) is a new machine: every step runs on it.
                triggers.push(host.serverId.apply(sha256));
                resource = new command.remote.Command(
                    `${name}-${step.name}`,
                    {
                        connection,
                        create: remoteCommand(host.connection.user),
                        stdin: script,
                        triggers,
                        logging: step.secret ? "none" : "stdoutAndStderr",
                        addPreviousOutputInEnv: false,
                    },
                    { parent: this, dependsOn, ...(step.secret ? { additionalSecretOutputs: ["stdout", "stderr"] } : {}) },
                );
            }
            resources[step.name] = resource;
        }
        this.steps = resources;
        this.releaseId = cloudflareRanges.apply((cf) => renderRelease(config, host.dataPath, trustCloudflare ? cf : undefined).id);
        this.registerOutputs({ releaseId: this.releaseId });
    }
}

/** The resources in a component's `dependsOn` option (a list or a single resource). */
function componentDependsOn(opts: pulumi.ComponentResourceOptions | undefined): pulumi.Input<pulumi.Resource>[] {
    const d = opts?.dependsOn;
    if (d === undefined) {
        return [];
    }
    if (Array.isArray(d)) {
        return d;
    }
    if (pulumi.Resource.isInstance(d)) {
        return [d];
    }
    throw new Error("HostProvisioner: pass dependsOn as a list of resources");
}

/** The stdin of one step; secret steps (only) see the secret values and stay secret. */
function stepScript(steps: pulumi.Output<Step[]>, step: Step, secretValues: pulumi.Output<Record<string, string>>): pulumi.Output<string> {
    const find = (all: Step[]) => {
        const found = all.find((s) => s.name === step.name);
        if (!found) {
            throw new Error(`step ${step.name} disappeared when the data device and web sources became known`);
        }
        return found;
    };
    if (!step.secret) {
        return steps.apply((all) => renderStepScript(find(all), {}));
    }
    return pulumi.secret(pulumi.all([steps, secretValues]).apply(([all, values]) => renderStepScript(find(all), values)));
}

/** Fails before any resource is registered when a referenced secret has no value. */
export function requireSecrets(steps: Step[], secretValues: Record<string, unknown>): void {
    const missing = [...new Set(steps.flatMap(stepSecrets))].filter((n) => !(n in secretValues)).sort();
    if (missing.length > 0) {
        throw new Error(`HostProvisioner: no value for secret${missing.length === 1 ? "" : "s"} ${missing.join(", ")} (pass them in secretValues)`);
    }
}

/**
 * deploy.imageSource "upload": streams the images from the local Docker to the
 * host. The private key reaches the script through its environment (written to
 * a 0600 temp file there), and the host key is pinned in a known_hosts file.
 * Local image ids are unknown at preview, so the trigger is the image list:
 * push a new tag to upload again.
 */
function uploadImages(name: string, images: string[], host: Host, opts: pulumi.CustomResourceOptions): command.local.Command {
    const c = host.connection;
    return new command.local.Command(
        name,
        {
            create: `bash ${UPLOAD_IMAGES_SCRIPT}`,
            environment: {
                ONEBOX_SSH_HOST: c.host,
                ONEBOX_SSH_PORT: String(c.port),
                ONEBOX_SSH_USER: c.user,
                ONEBOX_SSH_PRIVATE_KEY: pulumi.secret(c.privateKey),
                ONEBOX_SSH_HOST_KEY: c.hostKey,
                ONEBOX_IMAGES: images.join(" "),
            },
            triggers: images,
            logging: "stdoutAndStderr",
            addPreviousOutputInEnv: false,
        },
        opts,
    );
}
