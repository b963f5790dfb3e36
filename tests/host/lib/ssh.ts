/**
 * SSH to a test server exactly as the program does: key auth, the host key
 * pinned in a known_hosts file (StrictHostKeyChecking yes: no trust on first
 * use), a step's script on stdin, a constant command string.
 */
import { spawn } from "node:child_process";

export interface SshTarget {
    host: string;
    port: number;
    user: string;
    identityFile: string;
    knownHostsFile: string;
}

export interface RunResult {
    code: number;
    stdout: string;
    stderr: string;
    ms: number;
}

export function sshArgs(t: SshTarget): string[] {
    return [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", `UserKnownHostsFile=${t.knownHostsFile}`,
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=10",
        "-o", "LogLevel=ERROR",
        "-i", t.identityFile,
        "-p", String(t.port),
        `${t.user}@${t.host}`,
    ];
}

/** Runs a process with optional stdin; bounded by `timeoutMs` (killed after). */
export function runProcess(cmd: string, args: string[], opts: { stdin?: string | NodeJS.ReadableStream; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    const start = Date.now();
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 600_000);
        child.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.on("close", (code) => {
            clearTimeout(timer);
            resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - start });
        });
        if (typeof opts.stdin === "string") {
            child.stdin.end(opts.stdin);
        } else if (opts.stdin) {
            opts.stdin.pipe(child.stdin);
        } else {
            child.stdin.end();
        }
    });
}

/** Runs `command` on the target; `stdin` is the step script when given. */
export function ssh(t: SshTarget, command: string, stdin?: string, timeoutMs?: number): Promise<RunResult> {
    return runProcess("ssh", [...sshArgs(t), command], { stdin, timeoutMs });
}

/** Like ssh() but throws with the output when the command fails. */
export async function sshOk(t: SshTarget, command: string, stdin?: string, timeoutMs?: number): Promise<string> {
    const r = await ssh(t, command, stdin, timeoutMs);
    if (r.code !== 0) {
        throw new Error(`ssh ${t.user}@${t.host}:${t.port} "${command}" exited ${r.code}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`);
    }
    return r.stdout;
}
