// lib/server.js — runs the real `confab` binary for a test: a free port on 127.0.0.1, a fresh
// data folder, readiness by GET /healthz, SIGTERM to stop, and a restart on the same port and
// data folder. The binary is $CONFAB_BIN or ../target/debug/confab (relative to e2e/).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const CONFAB_BIN = process.env.CONFAB_BIN || path.resolve(here, "../../target/debug/confab");

/** A port nobody listens on right now (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (srv.address());
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class ConfabServer {
  /** @param {number} port @param {string} dataDir */
  constructor(port, dataDir) {
    this.port = port;
    this.dataDir = dataDir;
    this.url = `http://127.0.0.1:${port}`;
    /** @type {import("node:child_process").ChildProcess|null} */
    this.child = null;
    this.log = [];
  }

  /** Starts a server on a free port with a new temporary data folder. */
  static async start() {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "confab-e2e-"));
    const server = new ConfabServer(await freePort(), dataDir);
    await server.spawn();
    return server;
  }

  async spawn() {
    const child = spawn(CONFAB_BIN, ["--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir], {
      env: { ...process.env, CONFAB_LOG: process.env.CONFAB_LOG || "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const keep = (chunk) => {
      this.log.push(String(chunk));
      if (this.log.length > 200) this.log.shift();
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    let exited = false;
    child.on("exit", () => {
      exited = true;
    });
    // A hang guard, not a speed requirement: the server normally answers within a second.
    for (let i = 0; i < 300; i++) {
      if (exited) throw new Error(`confab exited during startup:\n${this.log.join("")}`);
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.ok) return;
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    throw new Error(`confab did not become healthy:\n${this.log.join("")}`);
  }

  /** SIGTERM and wait for the process to end. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const done = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await done;
    clearTimeout(timer);
    this.child = null;
  }

  /** Stops and starts again on the same port and data folder. */
  async restart() {
    await this.stop();
    await this.spawn();
  }

  async dispose() {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}
