/**
 * onebox: one server for a Docker Compose web app.
 *
 * Wiring only: validate the whole configuration first (nothing is created when
 * any setting is wrong), then secrets, the server, DNS, backup storage, the
 * host provisioning over SSH, and the outputs contract other teams consume.
 */
// The library's public surface, as any other program would import it ("onebox").
import {
    AppSecrets,
    BackupBucket,
    buildOutputs,
    CloudflareDns,
    createHost,
    DatabaseTls,
    HostProvisioner,
    loadConfig,
    planOf,
    provisioningConfig,
    provisioningSecrets,
    rotationLabel,
} from "./components";

const { config, secretValues, sshPrivateKey } = loadConfig();
// Every derived fact (published database, status host, DNS names...) is read off the plan.
const plan = planOf(config);

// Rotation periods are read off the clock once per run (see components/secrets/rotation.ts).
const now = new Date();

const secrets = new AppSecrets("secrets", {
    generatedSecrets: config.generatedSecrets,
    userSecrets: secretValues,
    databasePassword: config.database.enabled,
    databasePasswordRotation: rotationLabel(config.database.passwordRotationDays, now),
});

const host = createHost("server", config, {}, {
    existingPrivateKey: sshPrivateKey,
});

const dns =
    // No record for a hostname the stack does not serve: a database-only stack without
    // dns.extraHostnames creates none.
    config.dns?.provider === "cloudflare" && plan.dnsHostnames.length > 0
        ? new CloudflareDns("dns", {
              zone: config.dns.zone,
              zoneId: config.dns.zoneId,
              hostnames: [...plan.dnsHostnames],
              ipv4: host.ipv4Address,
              // AAAA only where the address is the server's own and stable.
              ipv6: host.ipv6Stable ? host.ipv6Address : undefined,
              proxied: config.dns.proxied,
              sslStrict: config.dns.sslStrict,
              originCertificate: config.tls.mode === "cloudflare-origin",
          })
        : undefined;

const backupStorage =
    config.backups?.enabled && config.backups.create
        ? new BackupBucket("backups", {
              bucket: config.backups.bucket,
              region: config.backups.region,
              prefix: plan.backupPrefix,
              retentionDays: config.backups.retentionDays,
              weeklyRetentionWeeks: config.backups.weeklyRetentionWeeks,
              tags: { app: config.app.name, environment: config.app.environment, "managed-by": "onebox" },
              keyRotation: rotationLabel(config.backups.keyRotationDays, now),
          })
        : undefined;

// PostgreSQL published to listed networks is served over TLS with a private CA (clients verify-full).
const databaseTls = plan.databasePublished
    ? new DatabaseTls("database-tls", { app: config.app, address: host.ipv4Address })
    : undefined;

const provisioner = new HostProvisioner(
    "provision",
    {
        config: provisioningConfig(config),
        host,
        secretValues: provisioningSecrets({ secrets, backupStorage, dns, databaseTls }),
    },
    { dependsOn: dns ? [dns] : [] },
);

/** The outputs contract (schema: outputs.schema.json). Never holds a secret. */
export const onebox = buildOutputs({ config, host, dnsRecords: dns?.records, databaseCaCertPem: databaseTls?.caCertPem });

/** Password of the database owner, for the clients of a published database (secret; undefined otherwise). */
export const databasePassword = databaseTls ? secrets.databasePassword : undefined;

/** Release installed by the last deploy (content hash of the release files). */
export const releaseId = provisioner.releaseId;
