/**
 * TLS for a PostgreSQL port published to listed networks
 * (`database.allowedCidrs`): a private CA and a server certificate for the
 * server's address, all made in Pulumi. Private keys are secret outputs (never
 * plain in the state); the CA certificate is public and goes into the outputs
 * contract, so clients connect with `sslmode=verify-full` and
 * `sslrootcert=<the CA certificate>` and cannot be downgraded or intercepted.
 * The server refuses unencrypted connections from the listed networks
 * (`hostnossl ... reject` in the rendered pg_hba.conf).
 *
 * The server certificate is valid for five years and is renewed by the first
 * `pulumi up` in its last 30 days; the CA lasts ten years.
 */
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

export const DATABASE_TLS_TYPE = "onebox:database:DatabaseTls";

/** Lifetimes in hours. */
export const CA_VALIDITY_HOURS = 10 * 365 * 24;
export const SERVER_VALIDITY_HOURS = 5 * 365 * 24;
export const SERVER_EARLY_RENEWAL_HOURS = 30 * 24;

/** Outputs of a private key that must stay secret in the state. */
const KEY_SECRET_OUTPUTS = ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"];

export interface DatabaseTlsArgs {
    /** Application name and environment, for the certificates' subjects. */
    readonly app: { name: string; environment: string };
    /** The server's public IPv4 address: the address clients connect to (an IP SAN). */
    readonly address: pulumi.Input<string>;
}

export class DatabaseTls extends pulumi.ComponentResource {
    /** PEM of the CA certificate clients trust (public). */
    public readonly caCertPem: pulumi.Output<string>;
    /** PEM of the server certificate (public). */
    public readonly certPem: pulumi.Output<string>;
    /** PEM of the server's private key (secret). */
    public readonly privateKeyPem: pulumi.Output<string>;

    constructor(name: string, args: DatabaseTlsArgs, opts?: pulumi.ComponentResourceOptions) {
        super(DATABASE_TLS_TYPE, name, {}, opts);
        const subject = `${args.app.name} ${args.app.environment}`;

        const caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this, additionalSecretOutputs: KEY_SECRET_OUTPUTS });
        const ca = new tls.SelfSignedCert(
            `${name}-ca`,
            {
                privateKeyPem: caKey.privateKeyPem,
                isCaCertificate: true,
                subject: { commonName: `${subject} database CA`, organization: "onebox" },
                allowedUses: ["cert_signing", "crl_signing"],
                validityPeriodHours: CA_VALIDITY_HOURS,
            },
            { parent: this },
        );
        const key = new tls.PrivateKey(`${name}-server-key`, { algorithm: "ECDSA", ecdsaCurve: "P256" }, { parent: this, additionalSecretOutputs: KEY_SECRET_OUTPUTS });
        const csr = new tls.CertRequest(
            `${name}-server-csr`,
            { privateKeyPem: key.privateKeyPem, subject: { commonName: `${subject} database`, organization: "onebox" }, ipAddresses: [args.address] },
            { parent: this },
        );
        const cert = new tls.LocallySignedCert(
            `${name}-server-cert`,
            {
                certRequestPem: csr.certRequestPem,
                caPrivateKeyPem: caKey.privateKeyPem,
                caCertPem: ca.certPem,
                allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
                validityPeriodHours: SERVER_VALIDITY_HOURS,
                earlyRenewalHours: SERVER_EARLY_RENEWAL_HOURS,
            },
            { parent: this },
        );

        this.caCertPem = ca.certPem;
        this.certPem = cert.certPem;
        this.privateKeyPem = pulumi.secret(key.privateKeyPem);
        this.registerOutputs({ caCertPem: this.caCertPem, certPem: this.certPem });
    }
}
