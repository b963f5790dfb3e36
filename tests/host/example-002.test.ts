/**
 * Example 002 (plan 003 of DEPLOYMENTS.md, the cleaning service) deployed as written on a
 * real (container) server: examples/002-cleaning-service/Pulumi.prod.yaml is read the way
 * tests/unit/examples/plans.test.ts reads it (its README's secrets as stand-ins), and only
 * what a fixture server cannot have is swapped (SWAPS below, each with its reason). Every
 * other setting (services, env, health checks, volumes, routes and their headers, Redis,
 * preflight, retention, keepReleases, ...) is the example's, so a change to the example is
 * deployed here. What the plan promises, end to end:
 *
 *   - deploy.preflight: one required secret missing on the server (the worker's
 *     SMTP_PASSWORD file), the first deploy fails naming it and its service, before any
 *     container of the stack exists;
 *   - every route (the apex, www. and api.) answers through the proxy with the stack's
 *     security headers (the API with its own CSP), /metrics only from its allowFrom range;
 *   - the API writes an upload that the jobs runner (no port, heartbeat health check) reads
 *     on the shared `uploads` volume and answers with a thumbnail;
 *   - Redis is reached by api and worker, not published, not reachable from the proxy or web;
 *   - the nightly backup unit archives the database and the shared volume once, and
 *     `restore.sh --volume uploads` puts a lost upload back.
 *
 *   flock -w 3600 /tmp/onebox-host-suite.lock node --import tsx --test --test-concurrency=1 tests/host/example-002.test.ts
 *
 * Needs what e2e.test.ts needs, plus onebox-test/caddy:current (caddy-image.sh: the example's
 * `allowFrom` needs onebox's Caddy build), onebox-test/cleaning-api:1 and
 * onebox-test/redis:latest (stack-images.sh); skips without them unless ONEBOX_REQUIRE_TOOLS=1.
 * One server, two runs of the deploy step (the failed preflight, then the real one). On the
 * shared 2-core machine: 211 s in all with a quiet neighbour (the first boot, the uploads and
 * both deploys 153 s of it), up to 450 s under load.
 * Talks only to 127.0.0.1 and the containers it creates; every wait is bounded.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readRawConfig } from "../../components/config/load";
import type { StackConfig } from "../../components/config/schema";
import type { Step } from "../../components/provisioning/steps";
import { exampleStacks } from "../../scripts/examples";
import { exampleConfig } from "../helpers/run-example";
import { e2eConfig, e2eSecrets, e2eSteps, fixtureHost, runSteps, StepError, SUITE_BACKUP_SCHEDULE, SUITE_DRILL_SCHEDULE, waitFor, type StepRun, type TriggerState } from "./lib/harness";
import { Fixture } from "./lib/fixture";
import { httpsRequest, SECURITY_HEADERS, type HttpAnswer } from "./lib/checks";

const NAME = "onebox-ex002-r5t2";
const PORTS = { ssh: 2341, http: 18341, https: 18441 };
const S3_PORT = 4572;
const HOOK_PORT = 4602;
const API_IMAGE = "onebox-test/cleaning-api:1";
const WEB_IMAGE = "onebox-test/web:1";
const PROXY_IMAGE = "onebox-test/caddy:current";
const REDIS_IMAGE = "onebox-test/redis:latest";
const POSTGRES_IMAGE = "onebox-test/postgres:17";

const fx: Fixture = new Fixture({
    name: NAME,
    ports: PORTS,
    images: [API_IMAGE, WEB_IMAGE, PROXY_IMAGE, REDIS_IMAGE, POSTGRES_IMAGE],
    diskSize: "3G",
    // The example's own bucket name (create: false; s3rver serves it).
    s3: { port: S3_PORT, bucket: (): string => (exampleRaw().backups as { bucket: string }).bucket },
    hook: { port: HOOK_PORT, recordGets: true },
});
const SKIP = fx.skip;

type Raw = Record<string, unknown>;
type Obj = Record<string, unknown>;

/** The example's stack file, as Pulumi would hand it to the program (README secrets as stand-ins). */
function exampleRaw(): Raw {
    const stack = exampleStacks().find((s) => s.example === "002-cleaning-service" && s.stack === "prod");
    assert.ok(stack, "examples/002-cleaning-service/Pulumi.prod.yaml");
    return readRawConfig(exampleConfig(stack));
}

/**
 * Every field swapped for the fixture, and why; the rest of the example is deployed as written.
 *
 * - host: the example creates a DigitalOcean droplet (region, size, os, data volume size,
 *   its admins' SSH keys, originLockdown to Cloudflare's ranges). The fixture is an existing
 *   server: provider `existing` at 127.0.0.1 with the fixture's host key, deploy user and
 *   data disk, SSH allowed from Docker's bridges (where the harness connects from), no swap.
 *   originLockdown goes with it: the test reaches 80/443 from the Docker bridge, not Cloudflare.
 * - dns: `cloudflare` (proxied, sslStrict) -> `none` on the same zone: no DNS or Cloudflare
 *   account here; the test resolves the hostnames to the published port itself.
 * - tls: `cloudflare-origin` -> `internal`: the origin certificate is made in Cloudflare.
 * - proxy.image: the example's registry copy of onebox's Caddy build -> the same build made
 *   locally (onebox-test/caddy:current; `allowFrom` needs it). kind and CSP stay.
 * - services.*.image: ghcr.io/cleaning/{api,web} -> onebox-test/cleaning-api:1 (the API and
 *   jobs runner the README's image table describes: /readyz, /healthz, REQUIRED_ENV,
 *   `python -m app.worker`, `python -m app.heartbeat`) and onebox-test/web:1.
 * - database: version 16 -> 17 with onebox-test/postgres:17: Debian 13 packages PostgreSQL 17
 *   only, and the suite builds its images from Debian (no other registry is reachable).
 * - redis.image: redis:7-alpine (the default) -> onebox-test/redis:latest, Debian's Redis with
 *   the official image's interface (stack-images.sh). memoryMb stays.
 * - deploy.imageSource: registry (the default) -> upload: the fixture reaches no registry.
 * - backups: the bucket name stays (s3rver inside the server serves it); `create: false`
 *   with the BACKUP_S3_* secrets, since the program would create it in AWS; the nightly
 *   schedule and the drill's schedule -> SUITE_BACKUP_SCHEDULE / SUITE_DRILL_SCHEDULE (twelve
 *   hours away: no timer fires during the run, the test starts the unit); alertUrl and
 *   heartbeatUrl -> a receiver inside the server (plain HTTP on its loopback, so
 *   `allowPlainHttpHooks`), never the example's internet addresses.
 * - sshPrivateKey: required by an existing server; the harness brings its own key.
 * - secrets: the README's SMTP_PASSWORD, the generated METRICS_TOKEN and SESSION_SECRET and
 *   the database password get random values per run (e2eSecrets style).
 */
function fixtureRaw(hostPub: string, hookUrl: string): Raw {
    const raw = exampleRaw();
    raw.host = fixtureHost(hostPub);
    raw.dns = { provider: "none", zone: (raw.dns as Obj).zone };
    raw.tls = { mode: "internal" };
    raw.proxy = { ...(raw.proxy as Obj), image: PROXY_IMAGE };
    const services = raw.services as Record<string, Obj>;
    for (const [name, svc] of Object.entries(services)) {
        assert.match(String(svc.image), /^ghcr\.io\/cleaning\/(api|web):/, `services.${name}.image`);
        svc.image = String(svc.image).includes("/api:") ? API_IMAGE : WEB_IMAGE;
    }
    raw.database = { ...(raw.database as Obj), version: 17, image: POSTGRES_IMAGE };
    raw.redis = { ...(raw.redis as Obj), image: REDIS_IMAGE };
    raw.deploy = { ...(raw.deploy as Obj), imageSource: "upload" };
    const backups = raw.backups as Obj;
    raw.backups = {
        ...backups,
        create: false,
        schedule: SUITE_BACKUP_SCHEDULE,
        alertUrl: hookUrl,
        heartbeatUrl: hookUrl.replace(/\/alert$/, "/ping"),
        allowPlainHttpHooks: true,
        drill: { ...(backups.drill as Obj), schedule: SUITE_DRILL_SCHEDULE },
    };
    raw.sshPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nharness\n-----END OPENSSH PRIVATE KEY-----\n";
    raw.secrets = { ...(raw.secrets as Obj), BACKUP_S3_ACCESS_KEY_ID: "harness-supplied-id-7Hq2Lm", BACKUP_S3_SECRET_ACCESS_KEY: "harness-supplied-key-9Xw4Rt" };
    return raw;
}

let raw: Raw;
let config: StackConfig;
let steps: Step[] = [];
let secrets: Record<string, string> = {};
let preflightFailure: StepError | undefined;
let stackBeforeDeploy = "";
let runs: StepRun[] = [];
const state: TriggerState = {};


const root = (body: string, timeoutMs?: number) => fx.root(body, timeoutMs);

const app = () => (raw.app as { name: string; environment: string });
const project = () => `${app().name}-${app().environment}`;
const routes = () => raw.routes as { host: string; path?: string; service: string; allowFrom?: string[]; headers?: { contentSecurityPolicy?: string } }[];

/** Containers of the stack, by compose service name. */
async function stackContainers(): Promise<string> {
    return (await root(`docker ps -a --filter label=com.docker.compose.project=${project()} --format '{{.Label "com.docker.compose.service"}}' | sort`)).trim();
}

fx.use(async () => {
    raw = fixtureRaw(fx.keys.hostPub, `http://127.0.0.1:${HOOK_PORT}/alert`);
    config = e2eConfig(raw);
    steps = e2eSteps(config, S3_PORT);
    const base = e2eSecrets();
    secrets = {
        POSTGRES_PASSWORD: base.POSTGRES_PASSWORD,
        BACKUP_S3_ACCESS_KEY_ID: base.BACKUP_S3_ACCESS_KEY_ID,
        BACKUP_S3_SECRET_ACCESS_KEY: base.BACKUP_S3_SECRET_ACCESS_KEY,
        SMTP_PASSWORD: e2eSecrets().APP_SECRET,
        METRICS_TOKEN: e2eSecrets().APP_SECRET,
        SESSION_SECRET: e2eSecrets().APP_SECRET,
    };

    // Every step up to the deploy, then one required secret goes missing on the server.
    const deployAt = steps.findIndex((s) => s.name === "deploy");
    await runSteps(fx.server, steps.slice(0, deployAt), secrets, state);
    const secretDir = (await root("ls -d /etc/onebox/*/secrets/worker")).trim();
    assert.equal(secretDir.split("\n").length, 1, secretDir);
    await root(`mv ${secretDir}/SMTP_PASSWORD /root/SMTP_PASSWORD.aside`);
    try {
        await runSteps(fx.server, steps, secrets, state);
    } catch (e) {
        if (!(e instanceof StepError)) throw e;
        preflightFailure = e;
    } finally {
        stackBeforeDeploy = await stackContainers();
        await root(`mv /root/SMTP_PASSWORD.aside ${secretDir}/SMTP_PASSWORD`);
    }
    // The same steps again: only the deploy (it never succeeded) and what follows run.
    runs = await runSteps(fx.server, steps, secrets, state);
}, 1_200_000);

test("deploy.preflight: a missing required secret is named with its service before any container of the stack exists", { skip: SKIP }, () => {
    assert.ok(preflightFailure, "the deploy with the worker's SMTP_PASSWORD missing failed");
    assert.equal(preflightFailure.step, "deploy");
    assert.match(preflightFailure.message, /deploy\.preflight: missing environment keys: service worker: SMTP_PASSWORD \(SMTP_PASSWORD_FILE names a secret file, and \S+\/secrets\/worker\/SMTP_PASSWORD is missing or empty\)/);
    assert.doesNotMatch(preflightFailure.message, /service api: SMTP_PASSWORD/, "the API's own copy is there: not named");
    assert.match(preflightFailure.message, /nothing was changed/);
    assert.equal(stackBeforeDeploy, "", "no container of the stack was created");
});

test("the example deploys: api, worker (no port), web, PostgreSQL, Redis and the proxy, all healthy", { skip: SKIP, timeout: 60_000 }, async () => {
    const deploy = runs.find((r) => r.name === "deploy");
    assert.ok(deploy?.ran, "the deploy ran again once the secret was back");
    assert.match(deploy.stdout, /deploy\.preflight: \d+ required key\(s\) set/);
    assert.match(deploy.stdout, /release [0-9a-f]{12} is live/);
    const expected = [...Object.keys(raw.services as Obj), "postgres", "proxy", "redis"].sort();
    assert.deepEqual((await stackContainers()).split("\n"), expected);
    const health = await root(`docker ps --filter label=com.docker.compose.project=${project()} --format '{{.Label "com.docker.compose.service"}} {{.Status}}' | sort`);
    for (const line of health.trim().split("\n")) assert.match(line, /\(healthy\)/, line);
    // The jobs runner (the API's image, which EXPOSEs 8000) publishes nothing, listens on
    // nothing (no LISTEN socket, state 0A, in its namespace but Docker's embedded DNS on
    // 127.0.0.11, 0B00007F in /proc/net/tcp) and shares no network with the proxy.
    const worker = `${project()}-worker-1`;
    assert.match((await root(`docker inspect -f '{{json .HostConfig.PortBindings}}' ${worker}`)).trim(), /^(\{\}|null)$/);
    const listening = await root(`docker exec ${worker} python -c "print(' '.join(l.split()[1] for f in ('/proc/net/tcp', '/proc/net/tcp6') for l in open(f).readlines()[1:] if l.split()[3] == '0A' and not l.split()[1].startswith('0B00007F:')))"`);
    assert.equal(listening.trim(), "", "no listening socket in the jobs runner");
    const networksOf = async (c: string) => (await root(`docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' ${c}`)).trim().split(" ");
    const proxyNets = await networksOf(`${project()}-proxy-1`);
    assert.deepEqual((await networksOf(worker)).filter((n) => proxyNets.includes(n)), [], "the proxy cannot reach the jobs runner");
});

/** Security headers of one answer, the CSP as the example sets it for that host. */
function headerProblems(a: HttpAnswer, csp: string): string[] {
    const problems: string[] = [];
    for (const [name, want] of Object.entries(SECURITY_HEADERS)) {
        const have = a.headers[name];
        const ok = name === "content-security-policy" ? have === csp : typeof have === "string" && want.test(have);
        if (!ok) problems.push(`${name}: ${JSON.stringify(have)}`);
    }
    if (a.headers.server !== undefined) problems.push(`server: ${JSON.stringify(a.headers.server)}`);
    return problems;
}

test("every route answers through the proxy with the stack's security headers; /metrics only from its allowFrom range", { skip: SKIP, timeout: 60_000 }, async () => {
    const stackCsp = (raw.proxy as { contentSecurityPolicy: string }).contentSecurityPolicy;
    const index = (await root(`docker exec ${project()}-web-1 cat /srv/www/index.html`)).trim();
    for (const route of routes()) {
        const csp = routes().find((r) => r.host === route.host && r.path === undefined)?.headers?.contentSecurityPolicy ?? stackCsp;
        if (route.allowFrom) {
            // The test connects from the Docker bridge, outside the example's monitoring network.
            const denied = await httpsRequest(route.host, PORTS.https, route.path ?? "/");
            assert.equal(denied.status, 403, `${route.host}${route.path ?? ""} from outside allowFrom`);
            continue;
        }
        const answer = route.service === "api" ? await httpsRequest(route.host, PORTS.https, "/readyz") : await httpsRequest(route.host, PORTS.https, "/");
        assert.equal(answer.status, 200, `${route.host}: ${answer.body.slice(0, 200)}`);
        assert.deepEqual(headerProblems(answer, csp), [], route.host);
        if (route.service === "api") assert.deepEqual(JSON.parse(answer.body), { status: "ready" }, "the database and Redis answer the API");
        else assert.equal(answer.body.trim(), index, `${route.host} serves the web frontend`);
    }
    // Plain HTTP is redirected to HTTPS on every host.
    for (const host of new Set(routes().map((r) => r.host))) {
        const r = await root(`curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: ${host}' http://127.0.0.1/`);
        assert.match(r, new RegExp(`^30[18] https://${host.replace(/\./g, "\\.")}/$`), host);
    }
});

test("an upload written by the API is read by the jobs runner on the shared volume", { skip: SKIP, timeout: 120_000 }, async () => {
    const api = routes().find((r) => r.service === "api" && r.path === undefined)!.host;
    const content = `photo of the kitchen ${Date.now()}`;
    const put = await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg", { method: "PUT", body: content });
    assert.equal(put.status, 201, put.body);
    // One directory on the data volume, owned by the services' user.
    assert.equal((await root("stat -c '%a %u:%g' /mnt/data/cleaning-prod/shared/uploads")).trim(), "770 10001:10001");
    assert.equal(await root("cat /mnt/data/cleaning-prod/shared/uploads/kitchen.jpg"), content);
    await waitFor("the worker's thumbnail", async () => (await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg.thumb")).status === 200, 60_000, 1000);
    const thumb = JSON.parse((await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg.thumb")).body) as { content: string };
    assert.match(thumb.content, new RegExp(`^thumbnail #\\d+ of kitchen\\.jpg: ${content}$`), "the worker read the API's file and counted the job in Redis");
    assert.match(await root(`docker logs ${project()}-worker-1 2>&1`), /worker: made kitchen\.jpg\.thumb/);
});

test("Redis: reached by api and worker only; not published, not from the proxy or web", { skip: SKIP, timeout: 180_000 }, async () => {
    const redis = `${project()}-redis`;
    assert.equal((await root(`docker inspect -f '{{json .NetworkSettings.Ports}}' ${redis}`)).trim(), "{}", "no port published");
    assert.doesNotMatch(await root("ss -Hltn"), /:6379\b/, "nothing listens on 6379 on the host");
    // Through the API's route: a counter kept in Redis.
    const api = routes().find((r) => r.service === "api" && r.path === undefined)!.host;
    const hits = JSON.parse((await httpsRequest(api, PORTS.https, "/redis")).body) as { hits: number };
    assert.ok(Number.isInteger(hits.hits) && hits.hits >= 1, JSON.stringify(hits));
    const probe =
        `import socket\ntry:\n    socket.create_connection(("${redis}", 6379), 3).sendall(b"PING\\r\\n")\n    print("connected")\nexcept OSError as e:\n    print(type(e).__name__)`;
    for (const svc of ["api", "worker"]) {
        assert.equal((await root(`docker exec ${project()}-${svc}-1 python -c "from app import common; print(common.redis('PING'))"`)).trim(), "PONG", svc);
    }
    const fromWeb = (await root(`docker exec -i ${project()}-web-1 python3 - <<'PY'\n${probe}\nPY`)).trim();
    assert.notEqual(fromWeb, "connected", "web has no redis: true");
    // The proxy's own network namespace (its image has no client): a probe container sharing it.
    const fromProxy = (await root(`docker run --rm -i --network container:${project()}-proxy-1 --entrypoint python ${API_IMAGE} - <<'PY'\n${probe}\nPY`, 120_000)).trim();
    assert.notEqual(fromProxy, "connected", "the proxy cannot reach Redis");
    assert.match(fromProxy, /^(gaierror|TimeoutError|timeout|ConnectionRefusedError|OSError)$/);
    const members = (await root(`docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' ${redis}`)).trim().split(" ");
    assert.equal(members.length, 1, `Redis is on its own network only: ${members.join(", ")}`);
    const onIt = (await root(`docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' ${members[0]}`)).trim().split(" ").sort();
    assert.deepEqual(onIt, [`${project()}-api-1`, redis, `${project()}-worker-1`].sort());
});

test("the nightly backup archives the database and the shared volume once; restore --volume uploads puts a lost upload back", { skip: SKIP, timeout: 600_000 }, async () => {
    const prefix = `${app().name}/${app().environment}`;
    await root("systemctl start onebox-cleaning-prod-backup.service", 280_000);
    const dumps = fx.s3.objects(`${prefix}/daily/`);
    assert.equal(dumps.length, 1, dumps.map((o) => o.key).join(", "));
    assert.match(dumps[0].key, new RegExp(`/daily/${app().name}-\\d{8}T\\d{6}Z\\.dump$`));
    const archives = fx.s3.objects(`${prefix}/files/`);
    assert.equal(archives.length, 1, `one archive of the volume two services mount: ${archives.map((o) => o.key).join(", ")}`);
    assert.match(archives[0].key, /\/files\/uploads-\d{8}T\d{6}Z\.tar\.gz$/);
    assert.deepEqual(fx.hook.requests().map((r) => `${r.method} ${r.url}`), ["GET /ping"], "one heartbeat, no failure alert");

    const api = routes().find((r) => r.service === "api" && r.path === undefined)!.host;
    const before = (await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg")).body;
    await root("rm /mnt/data/cleaning-prod/shared/uploads/kitchen.jpg /mnt/data/cleaning-prod/shared/uploads/kitchen.jpg.thumb");
    assert.equal((await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg")).status, 404);
    const restore = await root("/usr/local/lib/onebox/backup/restore.sh --volume uploads --yes 2>&1", 280_000);
    assert.match(restore, /restore summary: .*uploads-\d{8}T\d{6}Z\.tar\.gz -> \/mnt\/data\/cleaning-prod\/shared\/uploads/);
    const after = await httpsRequest(api, PORTS.https, "/uploads/kitchen.jpg");
    assert.equal(after.status, 200);
    assert.equal(after.body, before, "the API serves the restored file");
    assert.equal((await root("stat -c '%u:%g' /mnt/data/cleaning-prod/shared/uploads/kitchen.jpg")).trim(), "10001:10001");
});
