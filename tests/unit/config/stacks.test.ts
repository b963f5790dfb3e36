/**
 * The committed stacks (every Pulumi.<stack>.yaml): each validates, names its
 * own environment, and staging is prod's twin in shape (same services, image
 * repositories, routes and providers: what is tested there is what is promoted) while sharing no
 * hostname, backup location or environment name with it, so a staging update
 * can never touch production's DNS records or dumps.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import * as path from "node:path";
import { loadConfig } from "../../../components/config/load";
import type { StackConfig } from "../../../components/config/schema";
import { backupPrefix } from "../../../components/storage/backup-prefix";
import { readStackFile } from "../../helpers/fixtures";

const ROOT = path.resolve(__dirname, "../../..");
const STACK_FILES = readdirSync(ROOT).filter((f) => /^Pulumi\.[a-z0-9-]+\.yaml$/.test(f)).sort();
const stackName = (file: string) => file.replace(/^Pulumi\.|\.yaml$/g, "");
const load = (file: string): StackConfig => loadConfig(readStackFile(file), () => true, undefined).config;

/** An image reference without its tag or digest: `ghcr.io/x/api:1.2` -> `ghcr.io/x/api`. */
function repository(image: string): string {
    return image.replace(/@sha256:[0-9a-f]+$/, "").replace(/:[^:/]+$/, "");
}

/** Hostnames a stack owns: routes and extra DNS names. */
function hostnames(c: StackConfig): string[] {
    return [...c.routes.map((r) => r.host), ...(c.dns?.provider === "cloudflare" ? c.dns.extraHostnames : [])];
}

describe("committed stack files", () => {
    it("prod and staging are both committed", () => {
        assert.deepEqual(STACK_FILES, ["Pulumi.prod.yaml", "Pulumi.staging.yaml"]);
    });

    for (const file of STACK_FILES) {
        it(`${file} validates and its app.environment is the stack name`, () => {
            assert.equal(load(file).app.environment, stackName(file));
        });
    }

    it("staging has prod's shape: same app, provider, size, OS, services, image repositories, routes' services and settings", () => {
        const prod = load("Pulumi.prod.yaml");
        const staging = load("Pulumi.staging.yaml");
        assert.equal(staging.app.name, prod.app.name);
        assert.deepEqual(
            [staging.host.provider, staging.host.os, staging.host.provider === "digitalocean" ? staging.host.size : ""],
            [prod.host.provider, prod.host.os, prod.host.provider === "digitalocean" ? prod.host.size : ""],
        );
        assert.deepEqual(Object.keys(staging.services).sort(), Object.keys(prod.services).sort());
        for (const [name, s] of Object.entries(prod.services)) {
            // Tags may differ (a release reaches staging first); the image itself may not.
            assert.equal(repository(staging.services[name].image), repository(s.image), `services.${name}.image: staging runs the image prod will run`);
            assert.deepEqual(Object.keys(staging.services[name].env).sort(), Object.keys(s.env).sort(), `services.${name}.env keys`);
        }
        assert.deepEqual(staging.routes.map((r) => [r.path, r.service]), prod.routes.map((r) => [r.path, r.service]));
        assert.deepEqual([staging.tls.mode, staging.proxy.kind, staging.database.version], [prod.tls.mode, prod.proxy.kind, prod.database.version]);
    });

    it("no two stacks share a hostname, an environment or a backup location", () => {
        const seen = new Map<string, string>();
        for (const file of STACK_FILES) {
            const c = load(file);
            const claims = [`environment ${c.app.name}/${c.app.environment}`, ...hostnames(c).map((h) => `hostname ${h}`)];
            if (c.backups?.enabled) {
                claims.push(`backups s3://${c.backups.bucket}/${backupPrefix(c)}`);
            }
            for (const claim of claims) {
                assert.equal(seen.get(claim), undefined, `${file} and ${seen.get(claim)} both have ${claim}`);
                seen.set(claim, file);
            }
        }
        assert.ok(seen.size >= 2 * 3, "claims were collected from every stack");
    });
});
