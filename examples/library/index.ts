/**
 * A Pulumi program of its own that uses onebox as a library: an existing
 * server and its provisioning, nothing else (no DNS, no bucket, no secrets
 * component). It imports the built package ("onebox") as any other program
 * would; `npm run build` first.
 *
 * The provisioner is still driven by a validated stack configuration (its own
 * `Input<>` arguments are the next step of the reusable-components work); the
 * configuration is built here in code rather than read from Pulumi config.
 */
import * as pulumi from "@pulumi/pulumi";
import { ExistingHost, HostProvisioner, validateConfig } from "onebox";

const cfg = new pulumi.Config();
const address = cfg.get("address") ?? "203.0.113.10";
const hostKey = cfg.get("hostKey") ?? "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleHostKeyOfTheServer00000000000000000";

const { config } = validateConfig({
    app: { name: "hello", environment: "demo" },
    host: { provider: "existing", address, user: "root", hostKey, sshAllowedCidrs: ["198.51.100.0/24"] },
    dns: { provider: "none", zone: "hello.example.com" },
    tls: { mode: "internal" },
    services: { web: { image: "ghcr.io/example/hello:1.0.0", port: 8080, health: { path: "/health" } } },
    routes: [{ host: "hello.example.com", service: "web" }],
    database: { enabled: false },
}, { deployKeyElsewhere: true });
if (config.host.provider !== "existing") throw new Error("unreachable: the example's host is existing");

const server = new ExistingHost("server", { host: config.host, privateKey: cfg.requireSecret("sshPrivateKey") });
const provisioner = new HostProvisioner("provision", { config, host: server, secretValues: {} });

export const url = pulumi.interpolate`https://hello.example.com (via ${server.ipv4Address})`;
export const steps = provisioner.urn;
