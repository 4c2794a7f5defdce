// Real processes for the end-to-end tests: `tether serve` (the gateway,
// restartable on the same port and data directory), `tether proxy` (faults
// on the link) and `tether token`. Each test starts what it needs and stops
// it afterwards. The binary is $TETHER_BIN, else the dev build's.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const TETHER = process.env.TETHER_BIN ?? new URL('../../../../build/dev/tools/tether', import.meta.url).pathname;
export const SECRET = 'js-e2e-secret';
export const ADMIN_KEY = 'js-e2e-admin-key-0123';

/** Starts `args` and resolves with the first match of `pattern` in its output. */
function startProcess(args: string[], pattern: RegExp): Promise<{ proc: ChildProcess; match: RegExpMatchArray; log: string[] }> {
  return new Promise((resolvePromise, reject) => {
    const proc = spawn(TETHER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const log: string[] = [];
    let done = false;
    const timer = setTimeout(() => fail(new Error(`${args[0]} did not start: ${log.join('\n')}`)), 10_000);
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(e);
    };
    for (const stream of [proc.stdout!, proc.stderr!])
      createInterface({ input: stream }).on('line', (line) => {
        log.push(line);
        const m = line.match(pattern);
        if (m && !done) {
          done = true;
          clearTimeout(timer);
          resolvePromise({ proc, match: m, log });
        }
      });
    proc.on('exit', (code) => fail(new Error(`${args[0]} exited with ${code}: ${log.join('\n')}`)));
    proc.on('error', fail);
  });
}

function exited(proc: ChildProcess): Promise<void> {
  return new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
}

export class Gateway {
  port = 0;
  proc?: ChildProcess;
  log: string[] = [];
  readonly dir: string;
  constructor(
    private readonly opts: { memory?: boolean; extra?: string[] } = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'tether-js-'));
  }
  async start(): Promise<this> {
    const store = this.opts.memory ? ['--memory'] : ['--data', this.dir];
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--token-secret', SECRET, '--admin-key', ADMIN_KEY,
      '--heartbeat', '2s', ...store, ...(this.opts.extra ?? [])];
    const { proc, match, log } = await startProcess(args, /listening on ws:\/\/127\.0\.0\.1:(\d+)/);
    this.proc = proc;
    this.log = log;
    this.port = Number(match[1]);
    return this;
  }
  /** kill -9: no drain, no goodbye. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    p.kill('SIGKILL');
    await exited(p);
    this.proc = undefined;
  }
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 8000);
    await exited(p);
    clearTimeout(t);
    this.proc = undefined;
  }
  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
  get url() {
    return `ws://127.0.0.1:${this.port}/`;
  }
  /** The admin API: GET or POST `path` with the admin key. */
  async admin(path: string, body?: unknown): Promise<any> {
    const r = await fetch(`http://127.0.0.1:${this.port}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  }
  /** Every event of `room` still in history, oldest first. */
  async history(room: string): Promise<Array<{ offset: number; data: unknown }>> {
    const out: Array<{ offset: number; data: unknown }> = [];
    for (let since = 0; ; ) {
      const h = await this.admin(`/api/rooms/${encodeURIComponent(room)}/history?since=${since}&limit=1000`);
      out.push(...h.events);
      if (h.events.length === 0 || out[out.length - 1].offset >= h.head) return out;
      since = out[out.length - 1].offset;
    }
  }
}

export class Proxy {
  port = 0;
  control = 0;
  proc?: ChildProcess;
  async start(upstreamPort: number): Promise<this> {
    const { proc, match } = await startProcess(
      ['proxy', '--listen', '127.0.0.1:0', '--upstream', `127.0.0.1:${upstreamPort}`, '--control', '127.0.0.1:0'],
      /listening on 127\.0\.0\.1:(\d+) -> upstream .*control on http:\/\/127\.0\.0\.1:(\d+)/,
    );
    this.proc = proc;
    this.port = Number(match[1]);
    this.control = Number(match[2]);
    return this;
  }
  get url() {
    return `ws://127.0.0.1:${this.port}/`;
  }
  async faults(body?: object): Promise<any> {
    const r = await fetch(`http://127.0.0.1:${this.control}/faults`, {
      method: body === undefined ? 'GET' : 'POST',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`proxy: ${r.status} ${await r.text()}`);
    return r.json();
  }
  async clear() {
    await fetch(`http://127.0.0.1:${this.control}/faults`, { method: 'DELETE' });
  }
  /** RST every open connection. */
  async reset() {
    await fetch(`http://127.0.0.1:${this.control}/reset`, { method: 'POST' });
  }
  async dispose() {
    this.proc?.kill('SIGKILL');
    if (this.proc) await exited(this.proc);
  }
}

/** An access token for `user`, minted by `tether token`. */
export function token(user: string, secret = SECRET): string {
  return execFileSync(TETHER, ['token', '--user', user, '--secret', secret, '--ttl', '1h']).toString().trim();
}

/** Resolves once `cond()` holds, checking on every turn of the event loop (bounded by `ms`). */
export async function until(cond: () => boolean | Promise<boolean>, ms = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
