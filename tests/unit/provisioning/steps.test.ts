/**
 * The step list as data (names, order, secrets, files, modes) and the rendered
 * stdin scripts, including one run of a rendered script with bash.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
    buildSteps,
    STACK_LOCK_WAIT_SECONDS,
    maskStepScript,
    remoteCommand,
    renderBackupEnv,
    renderBootstrapEnv,
    renderServiceEnv,
    renderStepScript,
    STEP_NAMES,
    stepSecrets,
    type HostFile,
    type Step,
} from "../../../components/provisioning/steps";
import { renderPgHba } from "../../../components/provisioning/render/pg-hba";
import { maskSecrets, substituteSecrets } from "../../../components/provisioning/placeholders";
import { contextFor, configOf, DEPLOYMENTS, FAKE_SCRIPTS, FAKE_SECRET, fakeSecretValues, HOST_KEY, type DeploymentName } from "./fixtures";

const NAMES = Object.keys(DEPLOYMENTS) as DeploymentName[];

function stepsOf(name: DeploymentName, change?: Parameters<typeof configOf>[1]): Step[] {
    const config = configOf(name, change);
    return buildSteps(config, contextFor(config));
}

function step(steps: Step[], name: string): Step {
    const s = steps.find((x) => x.name === name);
    assert.ok(s, `no step ${name}`);
    return s;
}

function fileOf(s: Step, p: string): HostFile {
    const f = s.files.find((x) => x.path === p);
    assert.ok(f, `step ${s.name} has no file ${p}; files: ${s.files.map((x) => x.path).join(", ")}`);
    return f;
}

describe("the step list", () => {
    for (const name of NAMES) {
        test(`${name}: fixed names and order, each step after the previous one`, () => {
            const steps = stepsOf(name);
            assert.deepEqual(steps.map((s) => s.name), ["wait-ready", "bootstrap", "secrets", "deploy", "backup", "jobs"]);
            steps.forEach((s, i) => assert.deepEqual(s.dependsOn, i === 0 ? [] : [steps[i - 1].name]));
            assert.ok(steps.every((s) => (STEP_NAMES as readonly string[]).includes(s.name)));
        });

        test(`${name}: R3/R4 only steps marked secret carry secret placeholders`, () => {
            for (const s of stepsOf(name)) {
                const refs = stepSecrets(s);
                if (!s.secret) {
                    assert.deepEqual(refs, [], s.name);
                    assert.ok(!JSON.stringify(s).includes("{{secret:"), s.name);
                }
            }
            assert.equal(step(stepsOf(name), "secrets").secret, true);
        });
    }

    test("upload mode adds the local images step between secrets and deploy", () => {
        const steps = stepsOf("social", (r) => (r.deploy = { imageSource: "upload" }));
        assert.deepEqual(steps.map((s) => s.name), ["wait-ready", "bootstrap", "secrets", "images", "deploy", "backup", "jobs"]);
        assert.deepEqual(step(steps, "images").upload, { images: ["caddy:2", "postgres:17", "ghcr.io/social/api:0.9.0", "ghcr.io/social/web:0.9.0"] });
        assert.deepEqual(step(steps, "deploy").dependsOn, ["images"]);
        assert.throws(() => renderStepScript(step(steps, "images"), {}), /runs locally/);
    });

    test("the secrets every deployment needs, by name", () => {
        const names = (n: DeploymentName) => [...new Set(stepsOf(n).flatMap(stepSecrets))].sort();
        assert.deepEqual(names("finances"), ["BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY", "JWT_REFRESH_SECRET", "JWT_SECRET", "POSTGRES_PASSWORD", "TLS_ORIGIN_CERT", "TLS_ORIGIN_KEY"]);
        assert.deepEqual(names("cleaning"), ["BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY", "METRICS_TOKEN", "POSTGRES_PASSWORD", "SMTP_PASSWORD"]);
        assert.deepEqual(names("fingerflow"), ["BACKUP_S3_ACCESS_KEY_ID", "BACKUP_S3_SECRET_ACCESS_KEY", "CSRF_SECRET", "POSTGRES_PASSWORD", "SESSION_SECRET"]);
    });

    test("R3: the remote command is constant and secret-free (exact)", () => {
        assert.equal(remoteCommand("root"), "bash -s");
        assert.equal(remoteCommand("deploy"), "sudo -n bash -s");
    });

    test("pure: the same inputs give the same steps; the data device changes the bootstrap only", () => {
        const config = configOf("finances");
        assert.deepEqual(buildSteps(config, contextFor(config)), buildSteps(config, contextFor(config)));
        const a = buildSteps(config, contextFor(config));
        const b = buildSteps(config, contextFor(config, { dataDevice: "/dev/disk/by-id/scsi-0DO_Volume_data" }));
        const changed = a.filter((s, i) => maskStepScript(s) !== maskStepScript(b[i])).map((s) => s.name);
        assert.deepEqual(changed, ["bootstrap"]);
    });
});

describe("wait-ready (H1)", () => {
    test("waits for cloud-init, bounded, and only fails on the timeout (exact)", () => {
        assert.equal(
            step(stepsOf("finances"), "wait-ready").run,
            [
                "if ! command -v cloud-init >/dev/null 2>&1; then",
                "  echo 'no cloud-init on this host; nothing to wait for'",
                "  return 0",
                "fi",
                "echo 'waiting for cloud-init to finish (at most 900 s)'",
                "rc=0",
                "timeout 900 cloud-init status --wait >/dev/null || rc=$?",
                'case "${rc}" in',
                "  0) echo 'cloud-init: done' ;;",
                "  124) echo 'cloud-init did not finish within 900 s' >&2; cloud-init status --long >&2 || true; exit 1 ;;",
                '  *) echo "cloud-init finished with status ${rc}; continuing" >&2; cloud-init status --long >&2 || true ;;',
                "esac",
            ].join("\n"),
        );
    });
});

describe("bootstrap", () => {
    test("installs bootstrap.sh with the files it ships, next to it, and runs it", () => {
        const s = step(stepsOf("finances"), "bootstrap");
        assert.deepEqual(s.files.map((f) => [f.path, f.mode, f.owner]), [
            ["/usr/local/lib/onebox/bootstrap.sh", "0755", "root:root"],
            ["/usr/local/lib/onebox/daemon.json", "0644", "root:root"],
            ["/usr/local/lib/onebox/migrate-layout.sh", "0755", "root:root"],
            ["/etc/onebox/finances-prod/bootstrap.env", "0600", "root:root"],
        ]);
        assert.equal(fileOf(s, "/usr/local/lib/onebox/bootstrap.sh").content, FAKE_SCRIPTS.bootstrap["bootstrap.sh"]);
        // The move into the stack's own directories (a no-op once done), then the bootstrap on the stack's settings.
        assert.equal(s.run, "/usr/local/lib/onebox/migrate-layout.sh finances finances-prod /mnt/data\nenv ONEBOX_BOOTSTRAP_ENV=/etc/onebox/finances-prod/bootstrap.env /usr/local/lib/onebox/bootstrap.sh");
    });

    test("bootstrap.env (exact): the settings bootstrap.sh documents", () => {
        const config = configOf("finances");
        assert.equal(
            renderBootstrapEnv(config, contextFor(config, { dataDevice: "/dev/disk/by-id/scsi-0DO_Volume_data" })),
            [
                "# Bootstrap settings of finances, rendered by onebox; sourced by /usr/local/lib/onebox/bootstrap.sh.",
                "ONEBOX_DEPLOY_USER='deploy'",
                "ONEBOX_ADMIN_CAN_ROOT='false'",
                "ONEBOX_DATA_PATH='/mnt/data'",
                "ONEBOX_DATA_DEVICE='/dev/disk/by-id/scsi-0DO_Volume_data'",
                "ONEBOX_SWAP_MB='1024'",
                "ONEBOX_SSH_ALLOWED_CIDRS='203.0.113.7/32'",
                "ONEBOX_SSH_PORT='22'",
                // Origin lockdown (finances): 80/443 from Cloudflare's ranges only, on the host too.
                "ONEBOX_PUBLIC_TCP_PORTS=''",
                "ONEBOX_RESTRICTED_PORTS='" +
                    "80:173.245.48.0/20 80:103.21.244.0/22 80:104.16.0.0/13 80:2400:cb00::/32 80:2606:4700::/32 " +
                    "443:173.245.48.0/20 443:103.21.244.0/22 443:104.16.0.0/13 443:2400:cb00::/32 443:2606:4700::/32'",
                "ONEBOX_DOCKER_SOURCE='auto'",
                // H14: a created server has no other stacks; the settings keep their defaults.
                "ONEBOX_STACK='finances-prod'",
                "ONEBOX_ALLOW_DOCKER_RESTART='false'",
                "ONEBOX_KEEP_PUBLISHED_PORTS=''",
                "",
            ].join("\n"),
        );
    });

    const guestCases: [string, Record<string, unknown>, string, string][] = [
        ["defaults", {}, "false", ""],
        ["allowDockerRestart and every published port kept", { allowDockerRestart: true, keepPublishedPorts: true }, "true", "all"],
        ["a list of kept ports", { keepPublishedPorts: [8080, 8443] }, "false", "8080 8443"],
    ];
    for (const [name, settings, allow, keep] of guestCases) {
        test(`H14 an existing server's guests in bootstrap.env: ${name}`, () => {
            const config = configOf("cleaning", (r) => {
                r.host = { provider: "existing", address: "203.0.113.50", hostKey: HOST_KEY, sshAllowedCidrs: ["203.0.113.7/32"], ...settings };
                r.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n";
            });
            const env = renderBootstrapEnv(config, contextFor(config));
            assert.match(env, new RegExp(`^ONEBOX_STACK='${config.app.name}-${config.app.environment}'$`, "m"));
            assert.match(env, new RegExp(`^ONEBOX_ALLOW_DOCKER_RESTART='${allow}'$`, "m"));
            assert.match(env, new RegExp(`^ONEBOX_KEEP_PUBLISHED_PORTS='${keep}'$`, "m"));
        });
    }

    test("without origin lockdown 80/443 are open to everyone and Cloudflare's ranges are not used", () => {
        const config = configOf("cleaning");
        const env = renderBootstrapEnv(config, contextFor(config, { webSources: { ipv4: ["198.51.100.0/24"], ipv6: [] } }));
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS='80 443'$/m);
        assert.match(env, /^ONEBOX_RESTRICTED_PORTS=''$/m);
    });

    test("origin lockdown on an existing server (no cloud firewall): the host admits only Cloudflare to 80/443, next to the database networks", () => {
        const config = configOf("finances", (r) => {
            r.host = { provider: "existing", address: "203.0.113.50", hostKey: HOST_KEY, sshAllowedCidrs: ["203.0.113.7/32"], originLockdown: true };
            r.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n";
            r.database = { ...(r.database as object), allowedCidrs: ["198.51.100.0/24"] };
        });
        const env = renderBootstrapEnv(config, contextFor(config, { webSources: { ipv4: ["173.245.48.0/20"], ipv6: ["2400:cb00::/32"] } }));
        assert.match(env, /^ONEBOX_PUBLIC_TCP_PORTS=''$/m);
        assert.match(env, /^ONEBOX_RESTRICTED_PORTS='80:173\.245\.48\.0\/20 80:2400:cb00::\/32 443:173\.245\.48\.0\/20 443:2400:cb00::\/32 5432:198\.51\.100\.0\/24'$/m);
    });

    test("origin lockdown without Cloudflare's ranges renders nothing (never open 80/443 to everybody)", () => {
        const config = configOf("finances");
        for (const webSources of [undefined, { ipv4: [], ipv6: [] }]) {
            assert.throws(() => buildSteps(config, contextFor(config, { webSources })), /host\.originLockdown is on but Cloudflare's IP ranges are missing/);
        }
    });

    test("Chronos: the database port is open to the listed networks only", () => {
        const config = configOf("chronos");
        assert.match(renderBootstrapEnv(config, contextFor(config)), /^ONEBOX_RESTRICTED_PORTS='5432:76\.76\.21\.0\/24 5432:198\.51\.100\.7\/32'$/m);
    });

    test("SSH from anywhere only with the opt-in, written as the bootstrap's \"any\"", () => {
        const config = configOf("finances", (r) => Object.assign(r.host as object, { sshAllowedCidrs: ["0.0.0.0/0"], allowSshFromAnywhere: true }));
        assert.match(renderBootstrapEnv(config, contextFor(config)), /^ONEBOX_SSH_ALLOWED_CIDRS='any'$/m);
    });

    test("root deploy user on an existing server: root may log in with keys; custom SSH port", () => {
        const config = configOf("fingerflow", (r) => Object.assign(r.host as object, { user: "root", port: 2222 }));
        const env = renderBootstrapEnv(config, contextFor(config));
        assert.match(env, /^ONEBOX_DEPLOY_USER='root'$/m);
        assert.match(env, /^ONEBOX_ADMIN_CAN_ROOT='true'$/m);
        assert.match(env, /^ONEBOX_SSH_PORT='2222'$/m);
        assert.match(env, /^ONEBOX_DATA_PATH='\/srv\/data'$/m);
    });
});

describe("secrets (H10)", () => {
    const s = step(stepsOf("finances"), "secrets");

    test("Chronos (published database): TLS certificate, key and pg_hba.conf beside the password, 0400 for the postgres uid", () => {
        const chronos = step(stepsOf("chronos"), "secrets");
        const pg = chronos.files.filter((f) => f.path.startsWith("/etc/onebox/chronos-prod/secrets/postgres/"));
        assert.deepEqual(pg.map((f) => [f.path.split("/").pop(), f.mode, f.owner]), [
            ["postgres-password", "0400", "999:999"],
            ["postgres-password.scram", "0400", "999:999"],
            ["server.crt", "0400", "999:999"],
            ["server.key", "0400", "999:999"],
            ["pg_hba.conf", "0400", "999:999"],
        ]);
        assert.equal(pg[2].content, "{{secret:POSTGRES_TLS_CERT}}");
        assert.equal(pg[3].content, "{{secret:POSTGRES_TLS_KEY}}");
        assert.ok(stepSecrets(chronos).includes("POSTGRES_TLS_KEY"));
        // Without allowedCidrs nothing of it.
        assert.ok(!s.files.some((f) => /server\.(crt|key)|pg_hba/.test(f.path)));
    });

    test("pg_hba.conf (exact): socket trusted, passwords elsewhere, unencrypted connections from the listed networks refused", () => {
        assert.equal(
            renderPgHba(configOf("chronos")),
            [
                "# pg_hba.conf of chronos, rendered by onebox. First match wins.",
                "# TYPE     DB   USER ADDRESS                                      METHOD",
                "local      all  all                                               trust",
                "host       all  all  127.0.0.1/32                                 scram-sha-256",
                "host       all  all  ::1/128                                      scram-sha-256",
                "hostnossl  all  all  76.76.21.0/24                                reject",
                "hostnossl  all  all  198.51.100.7/32                              reject",
                "host       all  all  all                                          scram-sha-256",
                "",
            ].join("\n"),
        );
    });

    test("env files are 0600 root in a 0700 root directory created before them", () => {
        assert.deepEqual(s.directories.map((d) => [d.path, d.mode, d.owner]), [
            ["/etc/onebox", "0700", "root:root"],
            ["/etc/onebox/finances-prod", "0700", "root:root"],
            ["/etc/onebox/finances-prod/env", "0700", "root:root"],
            ["/etc/onebox/finances-prod/secrets", "0700", "root:root"],
            ["/etc/onebox/finances-prod/secrets/postgres", "0500", "999:999"],
            ["/etc/onebox/finances-prod/secrets/api", "0500", "10001:10001"],
            ["/etc/onebox/finances-prod/certs", "0700", "root:root"],
        ]);
        for (const f of s.files.filter((x) => x.path.endsWith(".env"))) {
            assert.equal(f.mode, "0600", f.path);
            assert.equal(f.owner, "root:root", f.path);
        }
    });

    test("H11/R8: secret files, one directory per container, owned by the uid that reads it (postgres 999, the service's user); PostgreSQL gets the verifier too", () => {
        assert.deepEqual(s.files.filter((f) => f.path.includes("/secrets/")).map((f) => [f.path, f.mode, f.owner, f.content]), [
            ["/etc/onebox/finances-prod/secrets/postgres/postgres-password", "0400", "999:999", "{{secret:POSTGRES_PASSWORD}}"],
            ["/etc/onebox/finances-prod/secrets/postgres/postgres-password.scram", "0400", "999:999", "{{secret:POSTGRES_PASSWORD|scram}}"],
            ["/etc/onebox/finances-prod/secrets/api/database-password", "0400", "10001:10001", "{{secret:POSTGRES_PASSWORD}}"],
            ["/etc/onebox/finances-prod/secrets/api/JWT_REFRESH_SECRET", "0400", "10001:10001", "{{secret:JWT_REFRESH_SECRET}}"],
            ["/etc/onebox/finances-prod/secrets/api/JWT_SECRET", "0400", "10001:10001", "{{secret:JWT_SECRET}}"],
        ]);
        // A service without the database gets a directory for its secrets alone.
        const cleaning = step(stepsOf("cleaning"), "secrets");
        assert.ok(cleaning.files.some((f) => f.path === "/etc/onebox/cleaning-prod/secrets/worker/SMTP_PASSWORD"), cleaning.files.map((f) => f.path).join(" "));
        const alpine = step(stepsOf("finances", (r) => ((r.database as Record<string, unknown>).image = "postgres:16-alpine")), "secrets");
        assert.equal(fileOf(alpine, "/etc/onebox/finances-prod/secrets/postgres/postgres-password").owner, "70:70");
        const imageUser = step(stepsOf("fingerflow", (r) => ((r.services as Record<string, Record<string, unknown>>).backend.user = null)), "secrets");
        const f = fileOf(imageUser, "/etc/onebox/fingerflow-prod/secrets/backend/database-password");
        assert.deepEqual([f.mode, f.owner], ["0444", "root:root"]);
        assert.deepEqual(imageUser.directories.find((d) => d.path.endsWith("/secrets/backend")), { path: "/etc/onebox/fingerflow-prod/secrets/backend", mode: "0555", owner: "root:root" });
    });

    test("origin certificate and key (Cloudflare origin TLS)", () => {
        assert.deepEqual([fileOf(s, "/etc/onebox/finances-prod/certs/origin.pem").mode, fileOf(s, "/etc/onebox/finances-prod/certs/origin.key").mode], ["0644", "0600"]);
        assert.equal(fileOf(s, "/etc/onebox/finances-prod/certs/origin.key").content, "{{secret:TLS_ORIGIN_KEY}}");
        assert.ok(!step(stepsOf("cleaning"), "secrets").files.some((x) => x.path.includes("/certs/")));
    });

    test("H11: a service env file (exact) holds only the secrets opted in with secretsAsEnv, DATABASE_URL with the password URL-encoded", () => {
        const optedIn = configOf("finances", (raw) => {
            (raw.services as Record<string, Record<string, unknown>>).api.secretsAsEnv = ["JWT_SECRET", "DATABASE_URL"];
        });
        assert.equal(
            renderServiceEnv(optedIn, "api"),
            [
                "# Secrets of service api (finances-prod) it reads from its environment (secretsAsEnv), rendered by onebox; root-only (H10).",
                "DATABASE_URL='postgresql://finances:{{secret:POSTGRES_PASSWORD|url}}@finances-prod-postgres:5432/finances'",
                "JWT_SECRET={{secret:JWT_SECRET|env}}",
                "",
            ].join("\n"),
        );
        // The opted-in secret is no longer a file; the other one still is.
        const files = step(buildSteps(optedIn, contextFor(optedIn)), "secrets").files.map((f) => f.path);
        assert.ok(!files.includes("/etc/onebox/finances-prod/secrets/api/JWT_SECRET"));
        assert.ok(files.includes("/etc/onebox/finances-prod/secrets/api/JWT_REFRESH_SECRET"));
        // By default: no value at all.
        assert.doesNotMatch(renderServiceEnv(configOf("finances"), "api"), /=/);
        assert.doesNotMatch(renderServiceEnv(configOf("finances"), "web"), /=/);
    });

    test("env files and secret directories of removed services are deleted (exact)", () => {
        assert.equal(
            s.run,
            [
                "shopt -s nullglob",
                "for f in /etc/onebox/finances-prod/env/*.env; do",
                '  case "${f##*/}" in',
                "    api.env|web.env) ;;",
                "    *) rm -rf -- \"${f}\"; printf 'removed   %s\\n' \"${f}\" ;;",
                "  esac",
                "done",
                "for f in /etc/onebox/finances-prod/secrets/*/; do",
                '  case "$(basename -- "${f}")/" in',
                "    postgres/|api/) ;;",
                "    *) rm -rf -- \"${f}\"; printf 'removed   %s\\n' \"${f}\" ;;",
                "  esac",
                "done",
                "for f in /etc/onebox/finances-prod/secrets/api/*; do",
                '  case "${f##*/}" in',
                "    database-password|JWT_REFRESH_SECRET|JWT_SECRET) ;;",
                "    *) rm -rf -- \"${f}\"; printf 'removed   %s\\n' \"${f}\" ;;",
                "  esac",
                "done",
                "if [[ -e /etc/onebox/finances-prod/registry ]]; then rm -rf -- /etc/onebox/finances-prod/registry; echo 'removed   registry logins'; fi",
            ].join("\n"),
        );
    });

    test("the prune loop, run with bash, removes only what no service uses", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-prune-"));
        try {
            for (const p of ["env/api.env", "env/web.env", "env/old.env", "env/notes.txt", "secrets/postgres/postgres-password", "secrets/api/database-password", "secrets/api/DROPPED_TOKEN", "secrets/old/database-password"]) {
                fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
                fs.writeFileSync(path.join(dir, p), "x");
            }
            const run = s.run.replaceAll("/etc/onebox/finances-prod", dir);
            const r = spawnSync("bash", ["-c", `set -euo pipefail\n${run}`], { encoding: "utf8" });
            assert.equal(r.status, 0, r.stderr);
            assert.deepEqual(fs.readdirSync(path.join(dir, "env")).sort(), ["api.env", "notes.txt", "web.env"]);
            assert.deepEqual(fs.readdirSync(path.join(dir, "secrets")).sort(), ["api", "postgres"]);
            assert.deepEqual(fs.readdirSync(path.join(dir, "secrets", "api")), ["database-password"]);
            assert.equal(r.stdout, `removed   ${dir}/env/old.env\nremoved   ${dir}/secrets/old/\nremoved   ${dir}/secrets/api/DROPPED_TOKEN\n`);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("deploy", () => {
    test("installs deploy.sh and the release, creates data directories, runs deploy.sh (exact run)", () => {
        const steps = stepsOf("cleaning");
        const s = step(steps, "deploy");
        const id = /releases\/([0-9a-f]{12})\//.exec(s.files[1].path)?.[1];
        assert.ok(id);
        assert.deepEqual(s.files.map((f) => [f.path, f.mode]), [
            ["/usr/local/lib/onebox/deploy.sh", "0755"],
            [`/srv/onebox/cleaning-prod/releases/${id}/compose.yaml`, "0644"],
            [`/srv/onebox/cleaning-prod/releases/${id}/Caddyfile`, "0644"],
            [`/srv/onebox/cleaning-prod/releases/${id}/release.manifest`, "0644"],
        ]);
        assert.equal(
            s.run,
            [
                "mkdir -p -- /mnt/data/cleaning-prod/postgres /mnt/data/cleaning-prod/redis",
                "if find /mnt/data/cleaning-prod/caddy/data /mnt/data/cleaning-prod/caddy/config /var/log/onebox/cleaning-prod/caddy ! -user 10080 -print -quit | grep -q .; then",
                "  chown -R 10080:10080 -- /mnt/data/cleaning-prod/caddy/data /mnt/data/cleaning-prod/caddy/config /var/log/onebox/cleaning-prod/caddy",
                "fi",
                `/usr/local/lib/onebox/deploy.sh /srv/onebox/cleaning-prod/releases/${id}`,
            ].join("\n"),
        );
        // H12: the non-root proxy owns what it writes.
        assert.deepEqual(s.directories.find((d) => d.path === "/mnt/data/cleaning-prod/caddy/data"), { path: "/mnt/data/cleaning-prod/caddy/data", mode: "0700", owner: "10080:10080" });
        assert.deepEqual(s.directories.find((d) => d.path === "/mnt/data/cleaning-prod/volumes/api/uploads"), { path: "/mnt/data/cleaning-prod/volumes/api/uploads", mode: "0750", owner: "10001:10001" });
        assert.ok(s.directories.some((d) => d.path === "/srv/onebox/cleaning-prod/proxy/certs"), "mount point of the certificates inside the read-only /etc/caddy");
    });

    test("R5: changing one image changes the deploy step only", () => {
        const a = stepsOf("finances");
        const b = stepsOf("finances", (r) => ((r.services as Record<string, { image: string }>).api.image = "ghcr.io/example/finances-api:1.0.1"));
        const changed = a.filter((s, i) => maskStepScript(s) !== maskStepScript(b[i])).map((s) => s.name);
        assert.deepEqual(changed, ["deploy"]);
    });
});

describe("backup", () => {
    test("backup.env (exact): bucket, database, encryption, status paths; credentials as placeholders", () => {
        const config = configOf("finances");
        assert.equal(
            renderBackupEnv(config, contextFor(config)),
            [
                "# Backup settings of finances-prod, rendered by onebox; secret (0600). Read by /usr/local/lib/onebox/backup/*.sh.",
                "BACKUP_S3_PROVIDER='aws'",
                "BACKUP_S3_BUCKET='example-finances-prod-backups'",
                "BACKUP_S3_REGION='eu-central-1'",
                "BACKUP_S3_ENDPOINT=''",
                "BACKUP_S3_PREFIX='finances/prod'",
                "BACKUP_S3_ACCESS_KEY_ID={{secret:BACKUP_S3_ACCESS_KEY_ID|env}}",
                "BACKUP_S3_SECRET_ACCESS_KEY={{secret:BACKUP_S3_SECRET_ACCESS_KEY|env}}",
                "BACKUP_S3_FORCE_PATH_STYLE='false'",
                // the program's bucket expires old dumps by its lifecycle rules
                "BACKUP_PRUNE='none'",
                "BACKUP_RETENTION_DAYS='14'",
                "BACKUP_WEEKLY_RETENTION_WEEKS='8'",
                "BACKUP_LOCAL_KEEP='0'",
                "BACKUP_LOCAL_DIR=''",
                "BACKUP_DB_CONTAINER='finances-prod-postgres'",
                "BACKUP_DB_NAME='finances'",
                "BACKUP_DB_USER='finances'",
                "BACKUP_AGE_RECIPIENT='age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'",
                "BACKUP_DIRS=''",
                "BACKUP_WEEKLY_DAY='7'",
                "BACKUP_STATE_DIR='/var/lib/onebox/finances-prod/backup'",
                "BACKUP_STATUS_FILE='/var/lib/onebox/finances-prod/status/backup.json'",
                "BACKUP_MAX_AGE_HOURS='26'",
                "BACKUP_ALERT_URL=''",
                "BACKUP_HEARTBEAT_URL=''",
                "DRILL_IMAGE='postgres:16'",
                "DRILL_TABLES='users'",
                "",
            ].join("\n"),
        );
    });

    test("uploads are backed up; an S3-compatible endpoint uses path-style; no weekly copies sets day 0", () => {
        const cleaning = configOf("cleaning");
        assert.match(renderBackupEnv(cleaning, contextFor(cleaning)), /^BACKUP_DIRS='\/mnt\/data\/cleaning-prod\/volumes\/api\/uploads'$/m);
        const ff = configOf("fingerflow", (r) => ((r.backups as Record<string, unknown>).weeklyRetentionWeeks = 0));
        const env = renderBackupEnv(ff, contextFor(ff));
        assert.match(env, /^BACKUP_S3_ENDPOINT='https:\/\/s3\.eu-west-1\.example-storage\.net'$/m);
        assert.match(env, /^BACKUP_S3_FORCE_PATH_STYLE='true'$/m);
        assert.match(env, /^BACKUP_WEEKLY_DAY='0'$/m);
        // an existing bucket: no lifecycle rules of ours, the host prunes
        assert.match(env, /^BACKUP_S3_PROVIDER='other'$/m);
        assert.match(env, /^BACKUP_PRUNE='host'$/m);
        assert.match(env, /^BACKUP_WEEKLY_RETENTION_WEEKS='0'$/m);
    });

    test("provider presets: endpoint, region, addressing and rclone profile reach backup.env", () => {
        const cases: [Record<string, unknown>, Record<string, string>][] = [
            [{ provider: "b2", region: "us-west-004" }, { PROVIDER: "b2", REGION: "us-west-004", ENDPOINT: "https://s3.us-west-004.backblazeb2.com", FORCE_PATH_STYLE: "true" }],
            [{ provider: "spaces", region: "fra1" }, { PROVIDER: "spaces", REGION: "fra1", ENDPOINT: "https://fra1.digitaloceanspaces.com", FORCE_PATH_STYLE: "false" }],
            [
                { provider: "r2", endpoint: "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com" },
                { PROVIDER: "r2", REGION: "auto", ENDPOINT: "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com", FORCE_PATH_STYLE: "true" },
            ],
            [{ provider: "minio", endpoint: "https://minio.example.net:9000" }, { PROVIDER: "minio", REGION: "us-east-1", ENDPOINT: "https://minio.example.net:9000", FORCE_PATH_STYLE: "true" }],
            [{ provider: "other", endpoint: "https://objects.example.net", region: "garage" }, { PROVIDER: "other", REGION: "garage", ENDPOINT: "https://objects.example.net", FORCE_PATH_STYLE: "true" }],
        ];
        for (const [backups, want] of cases) {
            const config = configOf("fingerflow", (r) => {
                const b = r.backups as Record<string, unknown>;
                delete b.endpoint;
                Object.assign(b, backups);
            });
            const env = renderBackupEnv(config, contextFor(config));
            for (const [k, v] of Object.entries(want)) assert.match(env, new RegExp(`^BACKUP_S3_${k}='${v.replace(/\./g, "\\.")}'$`, "m"), `${JSON.stringify(backups)}: ${k}`);
        }
    });

    test("an endpoint decided outside the config (StepContext.backup) is addressed path-style with the generic profile", () => {
        const config = configOf("finances");
        const env = renderBackupEnv(config, { ...contextFor(config), backup: { endpoint: "http://127.0.0.1:9000" } });
        assert.match(env, /^BACKUP_S3_PROVIDER='other'$/m);
        assert.match(env, /^BACKUP_S3_ENDPOINT='http:\/\/127\.0\.0\.1:9000'$/m);
        assert.match(env, /^BACKUP_S3_FORCE_PATH_STYLE='true'$/m);
    });

    test("backups.local renders the copies' directory on the data volume; pruneOnHost: false leaves retention to the bucket", () => {
        const config = configOf("fingerflow", (r) => Object.assign(r.backups as Record<string, unknown>, { local: { keep: 3 }, pruneOnHost: false }));
        const env = renderBackupEnv(config, contextFor(config));
        assert.match(env, /^BACKUP_LOCAL_KEEP='3'$/m);
        assert.match(env, new RegExp(`^BACKUP_LOCAL_DIR='${contextFor(config).dataPath}/fingerflow-prod/backups'$`, "m"));
        assert.match(env, /^BACKUP_PRUNE='none'$/m);
    });

    test("installs every backup script, the 0600 settings and the units, then enables the timers (exact run)", () => {
        const s = step(stepsOf("finances"), "backup");
        assert.equal(s.secret, true);
        assert.deepEqual(s.files.map((f) => [f.path, f.mode]), [
            ["/usr/local/lib/onebox/backup/backup-status.sh", "0755"],
            ["/usr/local/lib/onebox/backup/backup.sh", "0755"],
            ["/usr/local/lib/onebox/backup/lib.sh", "0755"],
            ["/usr/local/lib/onebox/backup/restore-drill.sh", "0755"],
            ["/etc/onebox/finances-prod/backup.env", "0600"],
            ["/etc/systemd/system/onebox-finances-prod-backup.service", "0644"],
            ["/etc/systemd/system/onebox-finances-prod-backup.timer", "0644"],
            ["/etc/systemd/system/onebox-finances-prod-restore-drill.service", "0644"],
            ["/etc/systemd/system/onebox-finances-prod-restore-drill.timer", "0644"],
            ["/etc/systemd/system/onebox-finances-prod-backup-status.service", "0644"],
            ["/etc/systemd/system/onebox-finances-prod-backup-status.timer", "0644"],
        ]);
        assert.equal(
            s.run,
            [
                "systemctl daemon-reload",
                // Point-in-time recovery is off: its units stop and its settings (with the key) go.
                "systemctl disable --now onebox-finances-prod-pitr-backup.timer 2>/dev/null || true",
                "systemctl disable --now onebox-finances-prod-pitr-push.timer 2>/dev/null || true",
                "systemctl disable --now onebox-finances-prod-pitr-push.path 2>/dev/null || true",
                "rm -f -- /etc/onebox/finances-prod/pgbackrest.conf",
                "systemctl enable --now onebox-finances-prod-backup.timer onebox-finances-prod-restore-drill.timer onebox-finances-prod-backup-status.timer",
            ].join("\n"),
        );
    });

    test("backups off: the step only stops timers left from before (exact)", () => {
        const s = step(stepsOf("social", (r) => delete r.backups), "backup");
        assert.equal(s.secret, false);
        assert.deepEqual(s.files, []);
        assert.equal(
            s.run,
            [
                "systemctl disable --now onebox-social-prod-backup.timer 2>/dev/null || true",
                "systemctl disable --now onebox-social-prod-restore-drill.timer 2>/dev/null || true",
                "systemctl disable --now onebox-social-prod-backup-status.timer 2>/dev/null || true",
                "systemctl disable --now onebox-social-prod-pitr-backup.timer 2>/dev/null || true",
                "systemctl disable --now onebox-social-prod-pitr-push.timer 2>/dev/null || true",
                "systemctl disable --now onebox-social-prod-pitr-push.path 2>/dev/null || true",
                "rm -f -- /etc/onebox/social-prod/pgbackrest.conf",
            ].join("\n"),
        );
    });

    test("missing backup scripts are named", () => {
        const config = configOf("finances");
        assert.throws(() => buildSteps(config, contextFor(config, { scripts: { ...FAKE_SCRIPTS, backup: { "backup.sh": "" } } })), /lacks backup-status\.sh, restore-drill\.sh/);
    });
});

describe("R8: the role password as a SCRAM-SHA-256 verifier", () => {
    test("the scram filter renders PostgreSQL's verifier format, deterministic per password, without the password; masked like any secret", () => {
        const text = `{{secret:POSTGRES_PASSWORD|scram}}`;
        const a = substituteSecrets(text, { POSTGRES_PASSWORD: "pw-one-Xk29vLq8Rz" });
        assert.match(a, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
        assert.equal(substituteSecrets(text, { POSTGRES_PASSWORD: "pw-one-Xk29vLq8Rz" }), a, "same password, same file (R5)");
        const b = substituteSecrets(text, { POSTGRES_PASSWORD: "pw-two-Xk29vLq8Rz" });
        assert.notEqual(b.split("$")[1], a.split("$")[1], "another password, another salt");
        assert.ok(!a.includes("pw-one"));
        assert.equal(maskSecrets(text), "********");
    });

    test("the verifier matches an independent implementation (Python's hashlib/hmac) of RFC 5802", () => {
        const password = "Zq7-rotated-Lm3x9PwR";
        const v = substituteSecrets("{{secret:P|scram}}", { P: password });
        const [, iterSalt, keys] = v.split("$");
        const [iterations, salt] = iterSalt.split(":");
        const py = [
            "import base64, hashlib, hmac, sys",
            "pw, salt, it = sys.argv[1].encode(), base64.b64decode(sys.argv[2]), int(sys.argv[3])",
            "s = hashlib.pbkdf2_hmac('sha256', pw, salt, it)",
            "ck = hmac.new(s, b'Client Key', hashlib.sha256).digest()",
            "sk = hmac.new(s, b'Server Key', hashlib.sha256).digest()",
            "print(base64.b64encode(hashlib.sha256(ck).digest()).decode() + ':' + base64.b64encode(sk).decode())",
        ].join("\n");
        const r = spawnSync("python3", ["-c", py, password, salt, iterations], { encoding: "utf8" });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stdout.trim(), keys);
    });
});

describe("R7: the stack lock", () => {
    test("secrets, deploy, backup and jobs hold /run/lock/onebox/<app>.lock for the whole step; wait-ready and bootstrap do not", () => {
        const steps = stepsOf("finances");
        const values = fakeSecretValues([...new Set(steps.flatMap(stepSecrets))]);
        for (const st of steps.filter((x) => !x.upload)) {
            const script = renderStepScript(st, values);
            const line = `  lock_stack /run/lock/onebox/finances-prod.lock 'onebox step ${st.name}' ${STACK_LOCK_WAIT_SECONDS}\n`;
            const locked = ["secrets", "deploy", "backup", "jobs"].includes(st.name);
            assert.equal(script.includes(line), locked, st.name);
            if (locked) {
                // Taken before the first file is written.
                assert.ok(script.indexOf(line) < script.indexOf("  put_"), st.name);
            }
        }
    });

    test("run with bash: a second holder waits at most the bound, names the holder, and fails without running its body", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-lock-"));
        try {
            const lock = path.join(dir, "locks", "app.lock");
            const helpers = renderStepScript({ ...step(stepsOf("finances"), "wait-ready"), run: "" }, {}).split("run_step() {")[0];
            const holder = spawnSync("bash", ["-c", `${helpers}\nlock_stack "$1" 'onebox step deploy' 5 && echo locked`, "x", lock], { encoding: "utf8", timeout: 30_000 });
            // The first holder has exited (its lock died with it) and left its name in the file.
            assert.equal(holder.status, 0, holder.stderr);
            assert.match(holder.stdout, /^locked$/m);
            assert.match(fs.readFileSync(lock, "utf8"), /^onebox step deploy \(pid \d+, user \S+, since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$/m);
            // Now hold it for real (flock(1) on the same file) and try again with a 1 s bound.
            const second = spawnSync("flock", [lock, "bash", "-c", `${helpers}\nlock_stack "$1" 'onebox step secrets' 1 && echo body-ran`, "x", lock], { encoding: "utf8", timeout: 30_000 });
            assert.equal(second.status, 1, second.stderr);
            assert.doesNotMatch(second.stdout, /body-ran/);
            assert.match(second.stdout, /waiting \(at most 1 s\) for the lock .*app\.lock, held by onebox step deploy \(pid/);
            assert.match(second.stderr, /error: .*app\.lock is still held after 1 s by onebox step deploy .*nothing was changed/);
            // Free again: taken at once.
            const third = spawnSync("bash", ["-c", `${helpers}\nlock_stack "$1" 'onebox step backup' 1 && echo body-ran`, "x", lock], { encoding: "utf8", timeout: 30_000 });
            assert.equal(third.status, 0, third.stderr);
            assert.match(third.stdout, /body-ran/);
            assert.equal(third.stderr, "");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("rendered step scripts", () => {
    const steps = stepsOf("finances");
    const secrets = step(steps, "secrets");
    const values = fakeSecretValues([...new Set(steps.flatMap(stepSecrets))]);

    test("shape: bash, strict mode, helpers, main as the last line, stdin detached", () => {
        const script = renderStepScript(secrets, values);
        const lines = script.split("\n");
        assert.equal(lines[0], "#!/usr/bin/env bash");
        assert.ok(lines.includes("set -euo pipefail"));
        assert.equal(lines.at(-2), 'main "$@"');
        assert.equal(lines.at(-1), "");
        assert.ok(script.includes("main() {\n  exec </dev/null\n  umask 022\n  work=\"$(mktemp -d)\"\n  trap 'rm -rf -- \"${work}\"' EXIT\n"));
    });

    test("every file is one put_file with quoted arguments and base64 content (exact line)", () => {
        const script = renderStepScript(secrets, values);
        assert.ok(script.includes("  put_dir /etc/onebox/finances-prod 0700 root:root\n"));
        assert.ok(script.includes("  put_dir /etc/onebox/finances-prod/secrets/postgres 0500 999:999\n"));
        assert.ok(script.includes("  put_file /etc/onebox/finances-prod/secrets/postgres/postgres-password 0400 999:999 <<'ONEBOX_EOF'\n"));
        const b64 = /put_file \/etc\/onebox\/finances-prod\/secrets\/api\/JWT_SECRET 0400 10001:10001 <<'ONEBOX_EOF'\n([A-Za-z0-9+/=\n]*?)ONEBOX_EOF/.exec(script)?.[1];
        assert.ok(b64);
        const content = Buffer.from(b64.replace(/\n/g, ""), "base64").toString("utf8");
        assert.equal(content, `${FAKE_SECRET}-JWT_SECRET`);
    });

    test("the masked script holds no secret value and no placeholder", () => {
        for (const s of steps) {
            const masked = maskStepScript(s);
            const decoded = [...masked.matchAll(/<<'ONEBOX_EOF'\n([^]*?)ONEBOX_EOF/g)].map((m) => Buffer.from(m[1].replace(/\n/g, ""), "base64").toString("utf8")).join("");
            assert.ok(!masked.includes(FAKE_SECRET) && !decoded.includes(FAKE_SECRET), s.name);
            assert.ok(!decoded.includes("{{secret:"), s.name);
        }
    });

    test("a missing secret value stops the render", () => {
        assert.throws(() => renderStepScript(secrets, {}), /^Error: step secrets: no value for secrets JWT_REFRESH_SECRET, JWT_SECRET, POSTGRES_PASSWORD, TLS_ORIGIN_CERT, TLS_ORIGIN_KEY$/);
    });

    test("run with bash: files land atomically with their modes, directories converge, a second run changes nothing", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-step-"));
        try {
            const owner = `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`;
            const secretDir = path.join(dir, "etc", "app");
            fs.mkdirSync(secretDir, { recursive: true, mode: 0o755 });
            const synthetic: Step = {
                name: "secrets",
                description: "test",
                directories: [{ path: secretDir, mode: "0700", owner }],
                files: [
                    { path: path.join(secretDir, "env", "api.env"), content: "A={{secret:A|env}}\n", mode: "0600", owner },
                    { path: path.join(dir, "plain file.txt"), content: "", mode: "0644", owner },
                ],
                // Reading stdin here must not swallow the rest of the script.
                run: `cat >/dev/null\necho "ran as $(id -u)"`,
                secret: true,
                dependsOn: [],
            };
            const script = renderStepScript(synthetic, { A: "x$y z" });
            const first = spawnSync("bash", ["-s"], { input: script, encoding: "utf8" });
            assert.equal(first.status, 0, first.stderr);
            assert.equal(fs.readFileSync(path.join(secretDir, "env", "api.env"), "utf8"), "A='x$y z'\n");
            assert.equal(fs.statSync(path.join(secretDir, "env", "api.env")).mode & 0o777, 0o600);
            assert.equal(fs.statSync(secretDir).mode & 0o777, 0o700);
            assert.equal(fs.readFileSync(path.join(dir, "plain file.txt"), "utf8"), "");
            assert.match(first.stdout, /^updated {3}.*api\.env$/m);
            assert.match(first.stdout, /^ran as \d+$/m);
            assert.deepEqual(fs.readdirSync(path.join(secretDir, "env")), ["api.env"], "no temporary file left behind");

            fs.chmodSync(secretDir, 0o755);
            const second = spawnSync("bash", ["-s"], { input: script, encoding: "utf8" });
            assert.equal(second.status, 0, second.stderr);
            assert.match(second.stdout, /^unchanged .*api\.env$/m);
            assert.equal(fs.statSync(secretDir).mode & 0o777, 0o700, "directory mode converged");

            const truncated = spawnSync("bash", ["-s"], { input: script.slice(0, script.lastIndexOf("main")), encoding: "utf8" });
            assert.equal(truncated.status, 0);
            assert.equal(truncated.stdout, "", "a truncated script runs nothing");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("private registries: the stack's own DOCKER_CONFIG (R3, R4)", () => {
    const TOKEN = "ghp_Tok3n-with'quote$and\"more";
    const registries = [
        { server: "ghcr.io", username: "chronos-bot", passwordSecret: "GHCR_TOKEN" },
        { server: "registry.example.com:5000", username: "deploy@example.com", passwordSecret: "S3_MEDIA_SECRET" },
        { server: "docker.io", username: "chronos", passwordSecret: "GHCR_TOKEN" },
    ];
    const withRegistries = (r: Record<string, unknown>) => {
        r.deploy = { ...(r.deploy as Record<string, unknown> | undefined), registries };
        (r.secrets as Record<string, string>).GHCR_TOKEN = "ghcr-fake-Qw8Zt3Lp9Vx2Nc";
    };
    const secrets = step(stepsOf("chronos", withRegistries), "secrets");
    const dir = "/etc/onebox/chronos-prod/registry";

    test("each password reaches the host as a 0600 file of a 0700 root directory, referenced by placeholder only", () => {
        assert.deepEqual(secrets.directories.find((d) => d.path === dir), { path: dir, mode: "0700", owner: "root:root" });
        assert.deepEqual(
            secrets.files.filter((f) => f.path.startsWith(dir)).map((f) => [f.path, f.mode, f.owner, f.content]),
            [
                [`${dir}/0.password`, "0600", "root:root", "{{secret:GHCR_TOKEN}}"],
                [`${dir}/1.password`, "0600", "root:root", "{{secret:S3_MEDIA_SECRET}}"],
                [`${dir}/2.password`, "0600", "root:root", "{{secret:GHCR_TOKEN}}"],
            ],
        );
        assert.ok(stepSecrets(secrets).includes("GHCR_TOKEN"));
        assert.equal(secrets.secret, true, "R4: the step logs nothing");
        assert.doesNotMatch(secrets.run, /\{\{secret:/, "R3: no secret in the commands");
    });

    test("the run composes config.json from the files (values never in an argument list) and removes them (executed)", () => {
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "onebox-registry-"));
        try {
            const run = secrets.run.slice(secrets.run.indexOf("(\n  umask 077")).split(dir).join(tmp);
            fs.writeFileSync(path.join(tmp, "0.password"), `${TOKEN}\n`);
            fs.writeFileSync(path.join(tmp, "1.password"), "s3-Zx9");
            fs.writeFileSync(path.join(tmp, "2.password"), TOKEN);
            const r = spawnSync("bash", ["-euo", "pipefail", "-c", run], { encoding: "utf8" });
            assert.equal(r.status, 0, r.stderr);
            assert.equal(r.stdout.trim(), "registry logins: ghcr.io, registry.example.com:5000, docker.io");
            const b64 = (s: string) => Buffer.from(s).toString("base64");
            assert.deepEqual(JSON.parse(fs.readFileSync(path.join(tmp, "config.json"), "utf8")), {
                auths: {
                    "ghcr.io": { auth: b64(`chronos-bot:${TOKEN}`) },
                    "registry.example.com:5000": { auth: b64("deploy@example.com:s3-Zx9") },
                    "https://index.docker.io/v1/": { auth: b64(`chronos:${TOKEN}`) },
                },
            });
            assert.equal(fs.statSync(path.join(tmp, "config.json")).mode & 0o777, 0o600);
            assert.deepEqual(fs.readdirSync(tmp).sort(), ["config.json"], "password files removed, no temp file left");
        } finally {
            fs.rmSync(tmp, { recursive: true, force: true });
        }
    });

    test("without registries the step removes an earlier stack's logins", () => {
        const plain = step(stepsOf("chronos"), "secrets");
        assert.ok(plain.run.includes(`if [[ -e ${dir} ]]; then rm -rf -- ${dir}; echo 'removed   registry logins'; fi`), plain.run);
        assert.equal(plain.files.some((f) => f.path.startsWith(dir)), false);
    });

    test("the release manifest points deploy.sh at the logins, only when there are any", () => {
        const deploy = (s: Step[]) => step(s, "deploy").files.find((f) => f.path.endsWith("/release.manifest"))?.content ?? "";
        assert.match(deploy(stepsOf("chronos", withRegistries)), /^REGISTRY_CONFIG=\/etc\/onebox\/chronos-prod\/registry$/m);
        assert.match(deploy(stepsOf("chronos")), /^REGISTRY_CONFIG=$/m);
    });
});
