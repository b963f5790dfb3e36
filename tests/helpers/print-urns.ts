/**
 * Prints, one per line and sorted, the URN of every resource index.ts
 * registers under recording mocks for one named stack configuration. Run in
 * its own process (the program module loads once per process):
 *
 *   tsx tests/helpers/print-urns.ts <stack>
 *
 * <stack> is a fixture name from STACKS. tests/unit/program/urns.test.ts
 * compares the output with the committed lists in tests/unit/program/urns/.
 */
import * as pulumi from "@pulumi/pulumi";
import { asPulumiConfig, digitalOceanRaw, existingRaw, lightsailRaw, readStackFile, type Raw } from "./fixtures";
import { runProgramWith } from "./program";

/** The stack configurations whose resource identities are pinned. */
export const STACKS: Record<string, () => Record<string, string>> = {
    digitalocean: () => asPulumiConfig(digitalOceanRaw()),
    lightsail: () => asPulumiConfig(lightsailRaw()),
    existing: () => asPulumiConfig(existingRaw()),
    "existing-lockdown": () => {
        const raw = existingRaw();
        delete raw.proxy;
        return asPulumiConfig({
            ...raw,
            host: { ...(raw.host as Raw), originLockdown: true },
            dns: { provider: "cloudflare", zone: "fingerflow.example.net", proxied: true },
            tls: { mode: "cloudflare-origin" },
        });
    },
    "Pulumi.prod.yaml": () => readStackFile("Pulumi.prod.yaml"),
};

async function main(): Promise<void> {
    const name = process.argv[2] ?? "";
    const stack = STACKS[name];
    if (!stack) {
        throw new Error(`unknown stack ${JSON.stringify(name)}; one of ${Object.keys(STACKS).join(", ")}`);
    }
    await runProgramWith(stack());
    const monitor = pulumi.runtime.getMonitor() as unknown as { resources?: Map<string, unknown> };
    if (!(monitor.resources instanceof Map)) {
        throw new Error("the mock monitor exposes no resource map");
    }
    process.stdout.write([...monitor.resources.keys()].sort().join("\n") + "\n");
}

if (require.main === module) {
    main().catch((err: unknown) => {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
    });
}
