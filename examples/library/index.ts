/**
 * A Pulumi program of its own that uses onebox as a library: an existing
 * server and its provisioning, nothing else (no DNS, no bucket, no secrets
 * component). It imports the built package ("onebox") as any other program
 * would; `npm run build` first.
 *
 * Each component takes arguments of its own, written here in code: the
 * settings have the same names and defaults as the onebox stack
 * configuration, and whatever is left out takes its default.
 */
import * as pulumi from "@pulumi/pulumi";
import { ExistingHost, HostProvisioner } from "onebox";

const cfg = new pulumi.Config();
const address = cfg.get("address") ?? "203.0.113.10";
const hostKey = cfg.get("hostKey") ?? "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleHostKeyOfTheServer00000000000000000";

// Admin networks: the only sources the server's own firewall admits to SSH (F1).
const adminCidrs = ["198.51.100.0/24"];

const server = new ExistingHost("server", {
    host: { address, hostKey, sshAllowedCidrs: adminCidrs },
    privateKey: cfg.requireSecret("sshPrivateKey"),
});

const provisioner = new HostProvisioner("provision", {
    host: server,
    config: {
        app: { name: "hello", environment: "demo" },
        host: { sshAllowedCidrs: adminCidrs },
        tls: { mode: "internal" },
        services: { web: { image: "ghcr.io/example/hello:1.0.0", port: 8080, health: { path: "/health" } } },
        routes: [{ host: "hello.example.com", service: "web" }],
        database: { enabled: false },
    },
    secretValues: {},
});

export const url = pulumi.interpolate`https://hello.example.com (via ${server.ipv4Address})`;
export const steps = provisioner.urn;
