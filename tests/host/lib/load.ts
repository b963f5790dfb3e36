/**
 * A bounded request loop against one HTTPS route through the published proxy
 * port: a few concurrent workers, each paced, counting every request that did
 * not answer 200 (status, or a network error) and the versions seen.
 */
import * as https from "node:https";

export interface LoadOptions {
    /** Published HTTPS port on 127.0.0.1. */
    port: number;
    /** Host header / SNI, e.g. "api.example.test". */
    host: string;
    path: string;
    /** Concurrent workers. @default 4 */
    concurrency?: number;
    /** Pause of each worker between requests. @default 25 */
    pauseMs?: number;
    /** Hard bounds: whichever comes first ends the loop. */
    maxRequests?: number;
    maxMs?: number;
    /** Per-request timeout. @default 15000 */
    timeoutMs?: number;
}

export interface LoadFailure {
    at: number;
    status: number | null;
    error?: string;
    body?: string;
}

export interface LoadResult {
    requests: number;
    failed: number;
    failures: LoadFailure[];
    /** Value of the JSON "version" field of each 200 answer, counted. */
    versions: Record<string, number>;
    /** Versions in the order they first appeared. */
    versionOrder: string[];
    ms: number;
    maxLatencyMs: number;
}

function once(opts: LoadOptions, agent: https.Agent): Promise<{ status: number | null; body: string; error?: string }> {
    return new Promise((resolve) => {
        const req = https.request(
            {
                host: "127.0.0.1",
                port: opts.port,
                path: opts.path,
                method: "GET",
                servername: opts.host,
                headers: { Host: opts.host },
                rejectUnauthorized: false,
                agent,
                timeout: opts.timeoutMs ?? 15_000,
            },
            (res) => {
                let body = "";
                res.setEncoding("utf8");
                res.on("data", (d: string) => (body += d));
                res.on("end", () => resolve({ status: res.statusCode ?? null, body }));
                res.on("error", (e) => resolve({ status: res.statusCode ?? null, body, error: e.message }));
            },
        );
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.on("error", (e) => resolve({ status: null, body: "", error: e.message }));
        req.end();
    });
}

/** A running loop: `stop()` ends it and resolves with the counts. */
export class LoadLoop {
    private stopped = false;
    private readonly done: Promise<LoadResult>;

    constructor(private readonly opts: LoadOptions) {
        this.done = this.run();
    }

    private async run(): Promise<LoadResult> {
        const o = this.opts;
        const maxRequests = o.maxRequests ?? 2000;
        const maxMs = o.maxMs ?? 120_000;
        const agent = new https.Agent({ keepAlive: true, maxSockets: o.concurrency ?? 4 });
        const start = Date.now();
        const result: LoadResult = { requests: 0, failed: 0, failures: [], versions: {}, versionOrder: [], ms: 0, maxLatencyMs: 0 };
        const worker = async () => {
            while (!this.stopped && result.requests < maxRequests && Date.now() - start < maxMs) {
                result.requests++;
                const t0 = Date.now();
                const r = await once(o, agent);
                result.maxLatencyMs = Math.max(result.maxLatencyMs, Date.now() - t0);
                if (r.status === 200 && !r.error) {
                    let version = "?";
                    try {
                        const v = (JSON.parse(r.body) as { version?: unknown }).version;
                        version = typeof v === "string" || typeof v === "number" ? String(v) : "?";
                    } catch {
                        version = "non-json";
                    }
                    if (!(version in result.versions)) {
                        result.versions[version] = 0;
                        result.versionOrder.push(version);
                    }
                    result.versions[version]++;
                } else {
                    result.failed++;
                    if (result.failures.length < 20) {
                        result.failures.push({ at: Date.now() - start, status: r.status, error: r.error, body: r.body.slice(0, 200) });
                    }
                }
                await new Promise((res) => setTimeout(res, o.pauseMs ?? 25));
            }
        };
        await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
        agent.destroy();
        result.ms = Date.now() - start;
        return result;
    }

    async stop(): Promise<LoadResult> {
        this.stopped = true;
        return this.done;
    }

    /** Resolves when the loop ends by itself (bounds reached). */
    finished(): Promise<LoadResult> {
        return this.done;
    }
}
