/**
 * Point-in-time recovery (backups.pointInTime) as rendered: the PostgreSQL settings and
 * mounts in compose.yaml (the database keeps no route out, H13), pgBackRest's settings per
 * storage preset with the bucket key only as a secret placeholder (R3), the retention that
 * reaches back `retentionDays`, and the units that push WAL and take base backups.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { appPaths } from "../../../components/provisioning/paths";
import { composeModel, pitrArchiveCommand, projectName, renderCompose } from "../../../components/provisioning/render/compose";
import { buildSteps, pitrFullBackupsKept, renderPgbackrestConf, type Step } from "../../../components/provisioning/steps";
import { renderBackupUnits } from "../../../components/provisioning/render/systemd";
import type { StackConfig } from "../../../components/config/schema";
import type { RawConfig } from "../../../components/config/load";
import { configOf, contextFor, FAKE_SCRIPTS } from "./fixtures";

const SCRIPTS = { ...FAKE_SCRIPTS, backup: { ...FAKE_SCRIPTS.backup, "pitr.sh": "#!/usr/bin/env bash\necho pitr\n" } };
const IMAGE = "registry.example.com/fingerflow/postgres-pgbackrest:17";

function pitrOn(raw: RawConfig): void {
    (raw.backups as Record<string, unknown>).pointInTime = true;
    raw.database = { ...((raw.database) ?? {}), version: 17, image: IMAGE };
}

function fingerflow(change?: (raw: RawConfig) => void): StackConfig {
    return configOf("fingerflow", (raw) => {
        pitrOn(raw);
        change?.(raw);
    });
}

interface PgService {
    command: string[];
    networks: string[];
    tmpfs: string[];
    volumes: { source: string; target: string }[];
}

function postgresOf(config: StackConfig): PgService {
    const dataPath = "/srv/data";
    const ctx = { project: projectName(config), paths: appPaths(projectName(config), dataPath) };
    const parsed = parse(renderCompose(config, ctx)) as { services: { postgres: PgService } };
    assert.deepEqual(parsed.services.postgres, (composeModel(config, ctx).services as Record<string, unknown>).postgres, "the rendered file says what the model says");
    return parsed.services.postgres;
}

const stepsOf = (config: StackConfig): Step[] => buildSteps(config, contextFor(config, { scripts: SCRIPTS }));
const stepNamed = (steps: Step[], name: string): Step => steps.find((s) => s.name === name)!;

describe("compose.yaml with backups.pointInTime", () => {
    test("PostgreSQL archives through the spool every 60 s at most; the socket is shared; no network is added (H13)", () => {
        const pg = postgresOf(fingerflow());
        const settings = pg.command.filter((_, i) => pg.command[i - 1] === "-c");
        for (const s of ["wal_level=replica", "archive_mode=on", "archive_timeout=60", `archive_command=${pitrArchiveCommand()}`]) {
            assert.ok(settings.includes(s), `postgres -c ${s}`);
        }
        assert.equal(
            pitrArchiveCommand(),
            "cp %p /var/spool/pgbackrest/.%f.part && sync /var/spool/pgbackrest/.%f.part && mv -f /var/spool/pgbackrest/.%f.part /var/spool/pgbackrest/%f",
        );
        assert.deepEqual(
            pg.volumes.filter((v) => /spool|socket/.test(v.source)).map((v) => [v.source, v.target]),
            [
                ["/srv/data/fingerflow-prod/postgres-wal-spool", "/var/spool/pgbackrest"],
                ["/srv/data/fingerflow-prod/postgres-socket", "/var/run/postgresql"],
            ],
        );
        assert.deepEqual(pg.tmpfs, ["/tmp"], "the socket directory is the shared mount, not memory");
        assert.deepEqual(pg.networks, ["database"], "still only its own internal network (H13): pgBackRest uploads from the host");
    });

    test("without it: no archiving, the socket directory in memory", () => {
        const pg = postgresOf(configOf("fingerflow"));
        assert.equal(pg.command.filter((c) => /^archive_|^wal_level/.test(c)).length, 0);
        assert.ok(pg.tmpfs.includes("/var/run/postgresql"));
        assert.equal(pg.volumes.filter((v) => /spool|socket/.test(v.source)).length, 0);
    });
});

describe("pgBackRest settings (/etc/onebox/<app>-<env>/pgbackrest.conf)", () => {
    const cases: [string, (raw: RawConfig) => void, string[]][] = [
        ["a custom endpoint (other): path style, its host", () => undefined, ["repo1-s3-endpoint=s3.eu-west-1.example-storage.net", "repo1-s3-uri-style=path", "repo1-s3-region=us-east-1"]],
        [
            "Spaces: the derived endpoint, virtual-hosted",
            (raw) => Object.assign(raw.backups as object, { provider: "spaces", region: "fra1", endpoint: undefined }),
            ["repo1-s3-endpoint=fra1.digitaloceanspaces.com", "repo1-s3-uri-style=host", "repo1-s3-region=fra1"],
        ],
        [
            "B2: the derived endpoint, path style",
            (raw) => Object.assign(raw.backups as object, { provider: "b2", region: "eu-central-003", endpoint: undefined }),
            ["repo1-s3-endpoint=s3.eu-central-003.backblazeb2.com", "repo1-s3-uri-style=path"],
        ],
        [
            "AWS with an existing bucket: the regional endpoint, virtual-hosted",
            (raw) => Object.assign(raw.backups as object, { provider: "aws", region: "eu-central-1", endpoint: undefined }),
            ["repo1-s3-endpoint=s3.eu-central-1.amazonaws.com", "repo1-s3-uri-style=host", "repo1-s3-region=eu-central-1"],
        ],
    ];
    for (const [name, change, expected] of cases) {
        test(name, () => {
            const config = fingerflow(change);
            const lines = renderPgbackrestConf(config, contextFor(config, { scripts: SCRIPTS })).split("\n");
            for (const line of expected) {
                assert.ok(lines.includes(line), `${line} in\n${lines.join("\n")}`);
            }
            assert.ok(lines.includes("repo1-path=/fingerflow/prod/pitr"), "under the stack's prefix");
            assert.ok(lines.includes("repo1-s3-bucket=fingerflow-backups"));
            assert.equal(lines.filter((l) => l.startsWith("repo1-storage-port=")).length, 0, "no port in the endpoint, none set");
        });
    }

    test("the stanza is the stack's cluster, reached as the database user through the socket", () => {
        const config = fingerflow();
        const conf = renderPgbackrestConf(config, contextFor(config, { scripts: SCRIPTS }));
        assert.match(conf, /\n\[onebox\]\npg1-path=\/var\/lib\/postgresql\/data\npg1-socket-path=\/var\/run\/postgresql\npg1-user=app\npg1-database=app\n/);
    });

    test("the key is a secret placeholder in a 0400 file of the database's uid, in a secret step (R3, R4)", () => {
        const steps = stepsOf(fingerflow());
        const backup = stepNamed(steps, "backup");
        const conf = backup.files.find((f) => f.path === "/etc/onebox/fingerflow-prod/pgbackrest.conf")!;
        assert.equal(conf.mode, "0400");
        assert.equal(conf.owner, "999:999");
        assert.match(conf.content, /^repo1-s3-key=\{\{secret:BACKUP_S3_ACCESS_KEY_ID\}\}$/m);
        assert.match(conf.content, /^repo1-s3-key-secret=\{\{secret:BACKUP_S3_SECRET_ACCESS_KEY\}\}$/m);
        assert.ok(!conf.content.includes("AKIAFAKEFINGERFLOW01"), "no key value in the rendered file");
        assert.equal(backup.secret, true);
    });

    test("a port in the endpoint and a private CA reach pgBackRest", () => {
        const config = fingerflow();
        const conf = renderPgbackrestConf(config, contextFor(config, { scripts: SCRIPTS, backup: { endpoint: "https://127.0.0.1:4569", caFile: "/etc/ca.pem" } }));
        assert.match(conf, /^repo1-s3-endpoint=127\.0\.0\.1\nrepo1-storage-port=4569$/m);
        assert.match(conf, /^repo1-storage-ca-file=\/etc\/pgbackrest\/ca\.pem$/m);
    });

    test("retention: enough weekly fulls to reach back retentionDays", () => {
        const table: [number, number][] = [
            [1, 2],
            [7, 2],
            [8, 3],
            [14, 3],
            [30, 6],
        ];
        for (const [days, fulls] of table) {
            assert.equal(pitrFullBackupsKept(days), fulls, `${days} days`);
            // Fulls come every 7 days: the oldest of `fulls` is at least 7 * (fulls - 1) days old.
            assert.ok(7 * (fulls - 1) >= days);
        }
        const config = fingerflow((raw) => Object.assign(raw.backups as object, { retentionDays: 30 }));
        assert.match(renderPgbackrestConf(config, contextFor(config, { scripts: SCRIPTS })), /^repo1-retention-full=6$/m);
    });
});

describe("host steps and units with backups.pointInTime", () => {
    test("deploy creates the spool and socket directories for the database's uid; backup creates the stanza before arming the units", () => {
        const steps = stepsOf(fingerflow());
        const dirs = stepNamed(steps, "deploy").directories.filter((d) => /spool|socket/.test(d.path));
        assert.deepEqual(dirs, [
            { path: "/srv/data/fingerflow-prod/postgres-wal-spool", mode: "0700", owner: "999:999" },
            { path: "/srv/data/fingerflow-prod/postgres-socket", mode: "0755", owner: "999:999" },
        ]);
        const run = stepNamed(steps, "backup").run.split("\n");
        const stanza = run.indexOf("env ONEBOX_BACKUP_ENV=/etc/onebox/fingerflow-prod/backup.env /usr/local/lib/onebox/backup/pitr.sh stanza");
        const enable = run.findIndex((l) => l.startsWith("systemctl enable --now"));
        assert.ok(stanza >= 0 && stanza < enable, run.join("\n"));
        for (const unit of ["onebox-fingerflow-prod-pitr-backup.timer", "onebox-fingerflow-prod-pitr-push.timer", "onebox-fingerflow-prod-pitr-push.path"]) {
            assert.ok(run[enable].split(" ").includes(unit), `${unit} enabled`);
        }
    });

    test("without it: no pgBackRest file, the units are disabled and its settings removed", () => {
        const steps = stepsOf(configOf("fingerflow"));
        const backup = stepNamed(steps, "backup");
        assert.equal(backup.files.filter((f) => f.path.includes("pgbackrest")).length, 0);
        assert.match(backup.run, /systemctl disable --now onebox-fingerflow-prod-pitr-push\.path/);
        assert.match(backup.run, /^rm -f -- \/etc\/onebox\/fingerflow-prod\/pgbackrest\.conf$/m);
        assert.equal(stepNamed(steps, "deploy").directories.filter((d) => /spool|socket/.test(d.path)).length, 0);
    });

    test("the steps refuse to render without pitr.sh", () => {
        const config = fingerflow();
        assert.throws(() => buildSteps(config, contextFor(config)), /lacks pitr\.sh/);
    });

    test("the pusher starts when a segment lands in the spool; the base backup runs on the backup schedule", () => {
        const units = renderBackupUnits({ project: "p", backupEnv: "/etc/onebox/p/backup.env", schedule: "30 3 * * *", pitr: { spoolDir: "/mnt/data/p/postgres-wal-spool" } });
        const path = units.find((u) => u.name === "onebox-p-pitr-push.path")!;
        assert.match(path.content, /^PathExistsGlob=\/mnt\/data\/p\/postgres-wal-spool\/0\*$/m);
        assert.match(path.content, /^Unit=onebox-p-pitr-push\.service$/m);
        assert.match(units.find((u) => u.name === "onebox-p-pitr-push.service")!.content, /^ExecStart=\/usr\/local\/lib\/onebox\/backup\/pitr\.sh push$/m);
        const backup = units.find((u) => u.name === "onebox-p-pitr-backup.service")!.content;
        assert.match(backup, /^ExecStart=\/usr\/local\/lib\/onebox\/backup\/pitr\.sh backup$/m);
        assert.match(units.find((u) => u.name === "onebox-p-pitr-backup.timer")!.content, /^OnCalendar=\*-\*-\* 03:30:00 UTC$/m);
    });
});
