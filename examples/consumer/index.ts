import * as pulumi from "@pulumi/pulumi";
import { readOneboxOutputs } from "onebox";

// `pulumi config set oneboxStack acme/onebox/prod`: the onebox stack to read.
const app = readOneboxOutputs(new pulumi.Config().require("oneboxStack")); // validates shape and version

export const apiUrl = app.apply((o) => o.urls.find((u) => u.hostname.startsWith("api."))?.url);
// Pin the server's host key (known_hosts line) instead of trusting it on first use.
export const knownHost = app.apply((o) => `${o.host.ipv4} ${o.host.sshHostKey}`);
// Present only when the stack publishes PostgreSQL (database.allowedCidrs); the password is
// the stack's separate secret output `databasePassword`.
export const database = app.apply((o) => (o.database ? { host: o.database.host, port: o.database.port, sslmode: o.database.sslmode } : undefined));
export const schemaVersion = app.apply((o) => o.schemaVersion);
