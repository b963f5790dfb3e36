/**
 * What the backup uploads send, checked against the rclone installed here
 * (the Debian package the bootstrap installs on a server): every upload
 * carries `x-amz-acl: private`, and rclone 1.60 offers no way to leave it out.
 * That header is why the backup credentials' policy (S6) includes
 * s3:PutObjectAcl on the prefix and why the bucket has ACLs disabled (S1):
 * see credentialsPolicyDocument in components/storage/backup-bucket.ts.
 *
 * The S3 side is a small recording endpoint on 127.0.0.1; rclone is driven
 * through the backup scripts' own `rclone_run` (scripts/host/backup/lib.sh).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const LIB = path.resolve(__dirname, "../../scripts/host/backup/lib.sh");
const HAVE_RCLONE = spawnSync("sh", ["-c", "command -v rclone"]).status === 0;
const REQUIRE = process.env.ONEBOX_REQUIRE_TOOLS === "1";

/** Runs a command without blocking the event loop; kills it after `timeoutMs`. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ status: number | null; stderr: string }> {
    return new Promise((resolve) => {
        const child = spawn(cmd, args, { env, stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        child.on("close", (status) => {
            clearTimeout(timer);
            resolve({ status, stderr });
        });
    });
}

interface Seen {
    method: string;
    url: string;
    acl: string | undefined;
}

void describe("backup uploads (rclone through lib.sh)", { skip: !HAVE_RCLONE && !REQUIRE ? "rclone is not installed" : false }, () => {
    const seen: Seen[] = [];
    const objects = new Map<string, Buffer>();
    let server: http.Server;
    let endpoint = "";
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-acl-"));

    before(async () => {
        server = http.createServer((req, res) => {
            const chunks: Buffer[] = [];
            req.on("data", (c: Buffer) => chunks.push(c));
            req.on("end", () => {
                const header = req.headers["x-amz-acl"];
                seen.push({ method: req.method ?? "", url: req.url ?? "", acl: Array.isArray(header) ? header.join(",") : header });
                const key = (req.url ?? "").split("?")[0];
                if (req.method === "PUT") {
                    objects.set(key, Buffer.concat(chunks));
                    res.setHeader("ETag", '"00000000000000000000000000000000"');
                    res.end();
                } else if (req.method === "HEAD" && objects.has(key)) {
                    res.setHeader("Content-Length", String(objects.get(key)?.length ?? 0));
                    res.setHeader("Last-Modified", new Date().toUTCString());
                    res.end();
                } else {
                    res.statusCode = 404;
                    res.end();
                }
            });
        });
        await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
        endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(() => {
        server.close();
        fs.rmSync(dir, { recursive: true, force: true });
    });

    void it("every upload carries x-amz-acl: private (the reason S6 grants s3:PutObjectAcl)", async () => {
        const file = path.join(dir, "dump.pgc");
        fs.writeFileSync(file, "not really a dump\n");
        const env: NodeJS.ProcessEnv = {
            PATH: process.env.PATH,
            HOME: dir,
            BACKUP_S3_ENDPOINT: endpoint,
            BACKUP_S3_BUCKET: "b",
            BACKUP_S3_REGION: "eu-central-1",
            BACKUP_S3_ACCESS_KEY_ID: "AKIATEST",
            BACKUP_S3_SECRET_ACCESS_KEY: "secret-test",
            BACKUP_S3_FORCE_PATH_STYLE: "true",
            BACKUP_RCLONE_RETRIES: "1",
            BACKUP_RCLONE_LOW_LEVEL_RETRIES: "1",
        };
        // Asynchronously: the recording endpoint lives in this process's event loop.
        const r = await run("bash", ["-c", 'source "$1"; rclone_run copyto --no-check-dest "$2" onebox:b/app/prod/daily/x.pgc', "acl", LIB, file], env, 60_000);
        assert.equal(r.status, 0, r.stderr);
        const puts = seen.filter((s) => s.method === "PUT");
        assert.deepEqual(puts, [{ method: "PUT", url: "/b/app/prod/daily/x.pgc", acl: "private" }]);
    });
});
