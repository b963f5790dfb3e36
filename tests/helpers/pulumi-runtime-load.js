// Loads index.ts the way Pulumi's Node.js language host does for `pulumi up`
// (node_modules/@pulumi/pulumi/cmd/run/run.js): ts-node registered through the
// SDK's own helpers (the project's TypeScript, the SDK's vendored ts-node unless
// the project has one, type checking on unless tsconfig says noCheck), the
// compiler options merged the same way; then the program runs under mocks.
// Plain JavaScript on purpose: no tsx in this process.
//
// Usage: node tests/helpers/pulumi-runtime-load.js '<pulumi config as JSON>' [PROJECT_DIR]
// PROJECT_DIR (default: the repository) is a project whose index.ts is loaded from
// that directory, with its tsconfig.json if it has one (as Pulumi: none, no project options).
// Prints one JSON line: { resources: <count>, types: [...], outputs: [...] }.
"use strict";
const path = require("path");
const root = path.resolve(__dirname, "../..");
const projectDir = process.argv[3] ? path.resolve(process.argv[3]) : root;
process.chdir(projectDir);
const tsutils = require("@pulumi/pulumi/tsutils");
const semver = require("semver");

const tsConfigPath = path.join(projectDir, "tsconfig.json");
const skipProject = !require("fs").existsSync(tsConfigPath);
const compilerOptions = tsutils.loadTypeScriptCompilerOptions(tsConfigPath);
const { tsnodeRequire, typescriptRequire } = tsutils.typeScriptRequireStrings();
const ts = require(typescriptRequire);
const useNodeNext = semver.parse(ts.version).compare(new semver.SemVer("4.7.0")) >= 0;
require(tsnodeRequire).register({
    compiler: typescriptRequire,
    transpileOnly: compilerOptions.noCheck,
    project: tsConfigPath,
    skipProject,
    compilerOptions: {
        target: "ES2020",
        module: useNodeNext ? "nodenext" : "commonjs",
        moduleResolution: useNodeNext ? "nodenext" : "node",
        sourceMap: "true",
        ...compilerOptions,
    },
});

const pulumi = require("@pulumi/pulumi");
const resources = [];
const mocks = {
    newResource(args) {
        resources.push(args.type);
        const extra = {
            "digitalocean:index/reservedIp:ReservedIp": { ipAddress: "203.0.113.20" },
            "digitalocean:index/droplet:Droplet": { ipv4Address: "203.0.113.10", ipv6Address: "2001:db8::10" },
            "tls:index/privateKey:PrivateKey": { privateKeyOpenssh: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n", publicKeyOpenssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRuntimeLoadTest\n" },
            "random:index/randomPassword:RandomPassword": { result: "r4nd0m-V4lue-Zq8w1Xr5Tn3Vb7Mk2Lp9Hs4Jd6Fg0" },
            "aws:iam/accessKey:AccessKey": { secret: "fake-secret" },
        }[args.type] || {};
        return { id: `${args.name}-id`, state: { ...args.inputs, ...extra } };
    },
    call(args) {
        if (args.token === "cloudflare:index/getZone:getZone") {
            return { id: "", zoneId: "0123456789abcdef0123456789abcdef" };
        }
        // Behind Cloudflare's proxy the Caddyfile trusts its published ranges.
        if (args.token === "cloudflare:index/getIpRanges:getIpRanges") {
            return { etag: "fake", ipv4Cidrs: ["173.245.48.0/20"], ipv6Cidrs: ["2400:cb00::/32"], jdcloudCidrs: [] };
        }
        throw new Error(`unexpected invoke ${args.token}`);
    },
};
// As the engine does: the keys holding values set with `pulumi config set --secret` are listed as secret.
pulumi.runtime.setAllConfig(JSON.parse(process.argv[2]), ["onebox:secrets", "onebox:sshPrivateKey"]);
pulumi.runtime.setMocks(mocks, "onebox", "runtime-load", false).then(async () => {
    const program = require(path.join(projectDir, "index.ts"));
    const outputs = Object.keys(program);
    await new Promise((resolve) => program.onebox.apply(resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.stdout.write(`${JSON.stringify({ resources: resources.length, types: [...new Set(resources)].sort(), outputs })}\n`);
}).catch((e) => {
    process.stderr.write(`${e && e.stack ? e.stack : String(e)}\n`);
    process.exit(1);
});
