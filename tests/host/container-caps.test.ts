/**
 * H12 on a real Docker engine: a service's rendered hardening (cap_drop ALL,
 * its `capAdd`, no-new-privileges) gives its process exactly the listed
 * capabilities, nothing of Docker's default set (NET_RAW, MKNOD, ...).
 *
 * The container options are read off the rendered compose model, not written
 * here: a renderer that forgot cap_drop or added a capability fails.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/container-caps.test.ts
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { validateConfig } from "../../components/config/load";
import { composeModel } from "../../components/provisioning/render/compose";
import { appPaths } from "../../components/provisioning/paths";
import { HOST_KEY } from "../unit/provisioning/fixtures";

const IMAGE = "onebox-test/python:latest";

/** Capability numbers of the kernel ABI (linux/capability.h). */
const CAP_NUMBER: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10, NET_RAW: 13 };

interface Service {
    cap_drop?: string[];
    cap_add?: string[];
    security_opt?: string[];
    user?: string;
}

function renderedService(capAdd: string[]): Service {
    const { config } = validateConfig({
        app: { name: "caps", environment: "test" },
        host: { provider: "existing", address: "127.0.0.1", hostKey: HOST_KEY, sshAllowedCidrs: ["172.16.0.0/12"] },
        sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnever-used\n-----END OPENSSH PRIVATE KEY-----\n",
        dns: { provider: "none", zone: "example.test" },
        tls: { mode: "internal" },
        services: { worker: { image: "onebox-test/python:1", user: null, capAdd, health: { command: ["true"] } } },
    });
    const model = composeModel(config, { project: "caps-test", paths: appPaths("caps-test", "/mnt/data") }) as { services: Record<string, Service> };
    return model.services.worker;
}

/** Runs the image with the service's capability options and returns its effective capability mask. */
function effectiveCaps(svc: Service): bigint {
    const args = ["run", "--rm", "--user", svc.user ?? "0:0"];
    for (const c of svc.cap_drop ?? []) args.push("--cap-drop", c);
    for (const c of svc.cap_add ?? []) args.push("--cap-add", c);
    for (const o of svc.security_opt ?? []) args.push("--security-opt", o);
    const r = spawnSync("docker", [...args, IMAGE, "sh", "-c", "grep '^CapEff:' /proc/self/status"], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    return BigInt(`0x${m[1]}`);
}

function mask(caps: string[]): bigint {
    return caps.reduce((acc, c) => acc | (1n << BigInt(CAP_NUMBER[c])), 0n);
}

test("the image is there (tests/host/fixture/stack-images.sh)", () => {
    assert.equal(spawnSync("docker", ["image", "inspect", IMAGE], { stdio: "ignore" }).status, 0);
});

test("Docker's defaults would give NET_RAW and more: the check below can tell", () => {
    const r = spawnSync("docker", ["run", "--rm", "--user", "0:0", IMAGE, "sh", "-c", "grep '^CapEff:' /proc/self/status"], { encoding: "utf8", timeout: 60_000 });
    const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    assert.notEqual(BigInt(`0x${m[1]}`) & mask(["NET_RAW"]), 0n);
});

for (const caps of [[], ["NET_BIND_SERVICE"], ["CHOWN", "SETGID", "SETUID"]]) {
    test(`capAdd ${JSON.stringify(caps)}: the process holds exactly these capabilities`, () => {
        assert.equal(effectiveCaps(renderedService(caps)).toString(16), mask(caps).toString(16));
    });
}
