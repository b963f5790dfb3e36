/**
 * Helpers of the real-host suite: HTTP(S) through the published proxy ports
 * (or straight to the server's address, "from outside the server"), raw TCP
 * reachability, and the host property checks that more than one test uses.
 */
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import type { TestServer } from "./harness";

export interface HttpAnswer {
    status: number;
    headers: http.IncomingHttpHeaders;
    body: string;
}

export interface RequestOptions {
    method?: string;
    body?: string;
    /** Address to connect to. @default "127.0.0.1" */
    address?: string;
    timeoutMs?: number;
}

/** One HTTPS request with SNI and Host set to `host`, connecting to address:port (redirects not followed). */
export function httpsRequest(host: string, port: number, path: string, opts: RequestOptions = {}): Promise<HttpAnswer> {
    return request(https, host, port, path, opts);
}

/** One plain HTTP request with the Host header set (redirects not followed). */
export function httpRequest(host: string, port: number, path: string, opts: RequestOptions = {}): Promise<HttpAnswer> {
    return request(http, host, port, path, opts);
}

function request(mod: typeof http | typeof https, host: string, port: number, path: string, opts: RequestOptions): Promise<HttpAnswer> {
    return new Promise((resolve, reject) => {
        const headers: Record<string, string> = { Host: host };
        if (opts.body !== undefined) {
            headers["Content-Type"] = "application/json";
            headers["Content-Length"] = String(Buffer.byteLength(opts.body));
        }
        const req = mod.request(
            {
                host: opts.address ?? "127.0.0.1",
                port,
                path,
                method: opts.method ?? "GET",
                headers,
                servername: host,
                rejectUnauthorized: false,
                agent: false,
                timeout: opts.timeoutMs ?? 10_000,
            },
            (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (d: string) => (body += d));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
                res.on("error", reject);
            },
        );
        req.on("timeout", () => req.destroy(new Error(`timeout after ${opts.timeoutMs ?? 10_000} ms`)));
        req.on("error", reject);
        req.end(opts.body);
    });
}

/** Whether a TCP connection to address:port is accepted within `timeoutMs`. */
export function tcpConnect(address: string, port: number, timeoutMs = 4000): Promise<"connected" | "refused" | "timeout" | "error"> {
    return new Promise((resolve) => {
        const socket = net.connect({ host: address, port });
        const done = (r: "connected" | "refused" | "timeout" | "error") => {
            socket.destroy();
            resolve(r);
        };
        socket.setTimeout(timeoutMs, () => done("timeout"));
        socket.on("connect", () => done("connected"));
        socket.on("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNREFUSED" ? "refused" : "error"));
    });
}

/** Security headers every proxied answer must carry, with a check of each value. */
export const SECURITY_HEADERS: Record<string, RegExp> = {
    "strict-transport-security": /^max-age=\d{7,}/,
    "content-security-policy": /default-src 'self'/,
    "x-frame-options": /^DENY$/,
    "x-content-type-options": /^nosniff$/,
    "referrer-policy": /^strict-origin-when-cross-origin$/,
};

/** Security headers missing or wrong on an answer ("" when all are right). */
export function headerProblems(a: HttpAnswer): string[] {
    const problems: string[] = [];
    for (const [name, want] of Object.entries(SECURITY_HEADERS)) {
        const have = a.headers[name];
        if (typeof have !== "string" || !want.test(have)) {
            problems.push(`${name}: ${JSON.stringify(have)} (want ${String(want)})`);
        }
    }
    if (a.headers.server !== undefined) {
        problems.push(`server header leaks ${JSON.stringify(a.headers.server)}`);
    }
    return problems;
}

async function rootOut(server: TestServer, body: string): Promise<string> {
    const r = await server.script(body, 30_000);
    if (r.code !== 0) {
        throw new Error(`server: ${body} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    }
    return r.stdout;
}

/** `sshd -T` as keyword -> value. */
export async function sshdEffective(server: TestServer): Promise<Record<string, string>> {
    const out = await rootOut(server, "sshd -T");
    const values: Record<string, string> = {};
    for (const line of out.split("\n")) {
        const m = /^(\S+)\s+(.*)$/.exec(line.trim());
        if (m && !(m[1] in values)) {
            values[m[1]] = m[2];
        }
    }
    return values;
}

export const SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-onebox-hardening.conf";

/**
 * H3 as the suite checks it, independent of the bootstrap's own --check: the
 * effective sshd values and the drop-in ordering. Returns the problems (none = H3 holds).
 */
export async function h3Problems(server: TestServer): Promise<string[]> {
    const v = await sshdEffective(server);
    const problems: string[] = [];
    const want: Record<string, string> = {
        passwordauthentication: "no",
        kbdinteractiveauthentication: "no",
        permitemptypasswords: "no",
        // The deploy user is not root, so root may not log in at all.
        permitrootlogin: "no",
        x11forwarding: "no",
    };
    for (const [k, w] of Object.entries(want)) {
        if (v[k] !== w) {
            problems.push(`sshd -T ${k} ${v[k] ?? "(missing)"}, want ${w}`);
        }
    }
    const tries = Number(v.maxauthtries);
    if (!(tries >= 1 && tries <= 4)) {
        problems.push(`sshd -T maxauthtries ${v.maxauthtries ?? "(missing)"}, want <= 4`);
    }
    // The hardening drop-in must exist and sort before every other drop-in (cloud-init's 50-cloud-init.conf).
    const dropins = (await rootOut(server, "find /etc/ssh/sshd_config.d -maxdepth 1 -name '*.conf' -printf '%f\\n' | LC_ALL=C sort"))
        .split("\n")
        .filter((l) => l !== "");
    const ours = SSHD_DROPIN.split("/").pop() ?? "";
    if (!dropins.includes(ours)) {
        problems.push(`${SSHD_DROPIN} is missing (drop-ins: ${dropins.join(", ")})`);
    } else {
        const before = dropins.slice(0, dropins.indexOf(ours)).filter((d) => d !== "00-onebox-host-key.conf");
        if (before.length > 0) {
            problems.push(`drop-ins sort before ${ours}: ${before.join(", ")}`);
        }
    }
    return problems;
}

/** Rule lines of `ufw status verbose`, comments dropped and whitespace collapsed. */
export function ufwRuleLines(status: string): string[] {
    const lines = status.split("\n");
    const start = lines.findIndex((l) => /^--\s+/.test(l));
    if (start < 0) {
        return [];
    }
    return lines
        .slice(start + 1)
        .map((l) => l.replace(/#.*$/, "").replace(/\s+/g, " ").trim())
        .filter((l) => l !== "");
}
