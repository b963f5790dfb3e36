/**
 * Stack volumes on a real (container) server: plan 002's API writes uploads that another
 * service reads. Two services mount one stack volume (`volumes.uploads`), the API
 * read-write and the web service read-only, both as the non-root uid 10001; the API
 * writes a file, the web service reads it and cannot write; the nightly backup unit
 * archives the volume once; the file deleted, `restore.sh --volume uploads --yes` puts it
 * back, and the running web service sees it again through its mount.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/shared-volumes.test.ts
 *
 * Needs what e2e.test.ts needs; skips without its images unless ONEBOX_REQUIRE_TOOLS=1.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { e2eConfig, e2eRawConfig, e2eSecrets, e2eSteps, runSteps, runStepScript, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";

const NAME = "onebox-vol-r5t2";
const PORTS = { ssh: 2341, http: 18341, https: 18441 };
const S3_PORT = 4571;
const PREFIX = "shop/e2e";
const PROJECT = "shop-e2e";
const VOLUME_DIR = "/mnt/data/shop-e2e/shared/uploads";

const fx = new Fixture({ name: NAME, ports: PORTS, images: ["onebox-test/api:1", "onebox-test/web:1", "onebox-test/postgres:17"], s3: { port: S3_PORT } });
const SKIP = fx.skip;

const state: TriggerState = {};

const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

async function tryRoot(body: string, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return fx.server.script(body, timeoutMs);
}

/** The e2e stack with `uploads` declared at stack level and mounted by two services. */
function sharedRaw(): Record<string, unknown> {
    const raw = e2eRawConfig(PORTS, fx.keys.hostPub);
    raw.volumes = { uploads: { owner: "10001:10001" } };
    const services = raw.services as Record<string, Record<string, unknown>>;
    services.api.volumes = [{ name: "uploads", mountPath: "/data/uploads" }];
    services.web.volumes = [{ name: "uploads", mountPath: "/srv/uploads", readOnly: true }];
    return raw;
}

fx.use();

test("one stack volume, two services: written by one, read by the other, archived once, restored in place", { skip: SKIP, timeout: 1_500_000 }, async () => {
    const config = e2eConfig(sharedRaw());
    const steps = e2eSteps(config, S3_PORT);
    const secrets = e2eSecrets();
    const run = await runSteps(fx.server, steps, secrets, state);
    assert.match(run.find((r) => r.name === "deploy")?.stdout ?? "", /release [0-9a-f]{12} is live/);

    // One directory, 0770, owned by the declared owner; the old per-service path is not used.
    assert.equal((await root(`stat -c '%a %u:%g' ${VOLUME_DIR}`)).trim(), "770 10001:10001");
    assert.equal((await tryRoot("test -e /mnt/data/shop-e2e/volumes/api/uploads")).code, 1);

    // The API (uid 10001, not root) writes; the web service reads the same file and cannot write.
    assert.equal((await root(`docker exec ${PROJECT}-api-1 id -u`)).trim(), "10001");
    await root(`docker exec ${PROJECT}-api-1 sh -c 'mkdir -p /data/uploads/2026 && printf "invoice 42\\n" > /data/uploads/2026/invoice.txt'`);
    assert.equal(await root(`docker exec ${PROJECT}-web-1 cat /srv/uploads/2026/invoice.txt`), "invoice 42\n");
    const write = await tryRoot(`docker exec ${PROJECT}-web-1 sh -c 'echo x > /srv/uploads/probe'`);
    assert.notEqual(write.code, 0, "the read-only mount refuses writes");
    assert.match(write.stdout + write.stderr, /Read-only file system/);
    assert.equal((await root(`stat -c '%u:%g' ${VOLUME_DIR}/2026/invoice.txt`)).trim(), "10001:10001");

    // The nightly backup, run by its unit: the manifest lists the directory once, one archive in files/.
    assert.match(await root("cat /etc/onebox/shop-e2e/backup.env"), new RegExp(`^BACKUP_DIRS='${VOLUME_DIR}'$`, "m"));
    await root("systemctl start onebox-shop-e2e-backup.service", 280_000);
    const archives = fx.s3.objects(`${PREFIX}/files/`);
    assert.equal(archives.length, 1, `one archive of the shared volume: ${archives.map((o) => o.key).join(", ")}`);
    assert.match(archives[0].key, /\/files\/uploads-\d{8}T\d{6}Z\.tar\.gz$/);

    // Lost, then restored: the web service sees the file again through its running mount.
    await root(`rm -r ${VOLUME_DIR}/2026`);
    assert.notEqual((await tryRoot(`docker exec ${PROJECT}-web-1 cat /srv/uploads/2026/invoice.txt`)).code, 0);
    const restore = await root("/usr/local/lib/onebox/backup/restore.sh --volume uploads --yes 2>&1", 280_000);
    assert.match(restore, /restore summary: .*uploads-\d{8}T\d{6}Z\.tar\.gz -> \/mnt\/data\/shop-e2e\/shared\/uploads/);
    assert.equal(await root(`docker exec ${PROJECT}-web-1 cat /srv/uploads/2026/invoice.txt`), "invoice 42\n");
    assert.equal((await root(`stat -c '%u:%g' ${VOLUME_DIR}/2026/invoice.txt`)).trim(), "10001:10001", "owner as archived");
    // The API can still write there after the restore.
    await root(`docker exec ${PROJECT}-api-1 sh -c 'echo after > /data/uploads/2026/after.txt'`);

    // Ownership is applied at deploy: a file left by root (an operator's copy) is handed to the owner.
    await root(`printf 'copied by root\\n' > ${VOLUME_DIR}/2026/by-root.txt && chown 0:0 ${VOLUME_DIR}/2026/by-root.txt`);
    const deploy = steps.find((s) => s.name === "deploy");
    assert.ok(deploy);
    const redeploy = await runStepScript(fx.server, deploy, secrets);
    assert.match(redeploy.stdout, /owner {5}\/mnt\/data\/shop-e2e\/shared\/uploads -> 10001:10001/);
    assert.equal((await root(`stat -c '%u:%g' ${VOLUME_DIR}/2026/by-root.txt`)).trim(), "10001:10001");
    await root(`docker exec ${PROJECT}-api-1 sh -c 'echo appended >> /data/uploads/2026/by-root.txt'`);
});
