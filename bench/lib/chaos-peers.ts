/**
 * The peers of bench/chaos-soak.ts: a relay (a real smtp-server behind a loopback TCP front that
 * can refuse connections or hang) and a webhook receiver (Bun.serve), each logging every message
 * it took (answered 250 / 2xx) with mailgw's id and the client's token, and each able to fail on
 * command: relay 421 / 451 / 535 / down / hang, webhook 500 / 429 / hang. Either can also kill
 * serve with SIGKILL just after it stored a message and before it answers (an attempt interrupted
 * by kill -9: the one case where a duplicate is expected). Not a test; loopback only.
 */
import { appendFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { SMTPServer } from "smtp-server";

export type RelayMode = "ok" | "down" | "421" | "451" | "535" | "hang" | "hang-data";
export type HookMode = "ok" | "500" | "429" | "hang";

/** bytes: the message's size as the peer got it (the webhook: `raw` decoded). */
export interface Took { at: number; id: string; token: string; bytes: number; killedAfter: boolean }

/** mailgw's queue id from its own Received header (the first one), and the client's token. */
export function idsOf(raw: string): { id: string; token: string } {
  const id = /\tid ([0-9a-z]+)/.exec(raw)?.[1] ?? "?";
  const token = /^X-Soak-Token: (\S+)/im.exec(raw)?.[1] ?? "?";
  return { id, token };
}

export class Relay {
  mode: RelayMode = "ok";
  took: Took[] = [];
  refusedByMode: Record<string, number> = {};
  /** Set: the next message the relay takes kills serve before the 250 goes back. */
  killNext: (() => void) | null = null;
  private front: { stop(closeActive?: boolean): void } | null = null;
  private fronts = new Set<Socket | { end(): void; destroy?: () => void }>();
  private readonly backend: SMTPServer;
  private busy = new Set<number>(); // upstream local ports with a transaction under way
  private hungData: Array<() => void> = [];

  constructor(private readonly port: number, private readonly backendPort: number, private readonly logFile: string) {
    this.backend = new SMTPServer({
      authOptional: false, allowInsecureAuth: true, disabledCommands: ["STARTTLS"], logger: false,
      size: 60 * 1024 * 1024,
      onConnect: (_s, cb) => (this.mode === "421" ? this.refuse("421", cb, 421, "4.3.2 service shutting down") : cb()),
      onAuth: (auth, _s, cb) => {
        if (this.mode === "535") return this.refuse("535", cb, 535, "5.7.8 authentication failed");
        cb(null, { user: auth.username });
      },
      onMailFrom: (_a, s, cb) => {
        if (this.mode === "451") return this.refuse("451", cb, 451, "4.3.0 try again later");
        if (this.mode === "421") return this.refuse("421", cb, 421, "4.3.2 service shutting down");
        this.busy.add(s.remotePort);
        cb();
      },
      onData: (stream, s, cb) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const raw = Buffer.concat(chunks);
          if (this.mode === "hang-data") {
            // Stuck after the data: no reply until the relay "restarts", which drops the connection.
            this.refusedByMode["hang-data"] = (this.refusedByMode["hang-data"] ?? 0) + 1;
            this.hungData.push(() => { this.busy.delete(s.remotePort); this.frontOf(s.remotePort)?.end(); });
            return;
          }
          const { id, token } = idsOf(raw.subarray(0, 8192).toString("latin1"));
          const kill = this.killNext;
          this.killNext = null;
          const t: Took = { at: Date.now(), id, token, bytes: raw.length, killedAfter: kill !== null };
          this.took.push(t);
          appendFileSync(this.logFile, JSON.stringify(t) + "\n");
          kill?.();
          // After a kill the 250 goes to a dead peer; a little later so the kill lands first.
          setTimeout(() => { this.busy.delete(s.remotePort); cb(null, "2.0.0 Ok: queued"); }, kill ? 50 : 0);
        });
      },
    });
    this.backend.listen(backendPort, "127.0.0.1");
    this.openFront();
  }

  private refuse(mode: string, cb: (e?: Error | null) => void, code: number, text: string): void {
    this.refusedByMode[mode] = (this.refusedByMode[mode] ?? 0) + 1;
    const e = new Error(text) as Error & { responseCode: number };
    e.responseCode = code;
    cb(e);
  }

  private openFront(): void {
    const self = this;
    this.front = Bun.listen<{ up: Socket | null }>({
      hostname: "127.0.0.1", port: this.port,
      socket: {
        open(s) {
          self.fronts.add(s);
          s.data = { up: null };
          if (self.mode === "hang") { self.refusedByMode.hang = (self.refusedByMode.hang ?? 0) + 1; return; }
          const up = connect(self.backendPort, "127.0.0.1");
          s.data.up = up;
          up.on("data", (d) => s.write(d));
          up.on("close", () => s.end());
          up.on("error", () => s.end());
        },
        data(s, d) { s.data.up?.write(d); },
        close(s) { self.fronts.delete(s); s.data.up?.destroy(); },
        error(s) { s.data.up?.destroy(); },
      },
    });
  }

  /** Down / hang end the connections not in a transaction now (a restarting relay), the others after it. */
  set(mode: RelayMode): void {
    if (mode === this.mode) return;
    const was = this.mode;
    this.mode = mode;
    if (mode === "down") {
      this.refusedByMode.down = (this.refusedByMode.down ?? 0) + 1;
      this.front?.stop(true);
      this.front = null;
    }
    if (was === "down") this.openFront();
    if (was === "hang-data") for (const end of this.hungData.splice(0)) end();
    if (mode === "down" || mode === "hang" || was === "hang") {
      for (const s of [...this.fronts]) this.endWhenIdle(s as unknown as { data: { up: Socket | null }; end(): void });
    }
  }

  private frontOf(upstreamPort: number): { end(): void } | undefined {
    return [...this.fronts].find((f) => (f as unknown as { data?: { up: Socket | null } }).data?.up?.localPort === upstreamPort) as { end(): void } | undefined;
  }

  private endWhenIdle(s: { data: { up: Socket | null }; end(): void }): void {
    const port = s.data?.up?.localPort;
    if (port === undefined || !this.busy.has(port)) { s.end(); return; }
    const t = setInterval(() => { if (!this.busy.has(port)) { clearInterval(t); s.end(); } }, 100);
  }

  stop(): void {
    this.front?.stop(true);
    this.backend.close();
  }
}

export class Hook {
  mode: HookMode = "ok";
  took: Took[] = [];
  refusedByMode: Record<string, number> = {};
  killNext: (() => void) | null = null;
  private hung: Array<(r: Response) => void> = [];
  private readonly server: ReturnType<typeof Bun.serve>;

  constructor(port: number, private readonly logFile: string) {
    this.server = Bun.serve({
      hostname: "127.0.0.1", port, maxRequestBodySize: 200 * 1024 * 1024, idleTimeout: 0,
      fetch: async (req) => {
        const body = await req.text();
        if (this.mode !== "ok") {
          this.refusedByMode[this.mode] = (this.refusedByMode[this.mode] ?? 0) + 1;
          if (this.mode === "500") return new Response("boom", { status: 500 });
          if (this.mode === "429") return new Response("slow down", { status: 429, headers: { "Retry-After": "3" } });
          return new Promise<Response>((res) => this.hung.push(res));
        }
        const post = JSON.parse(body) as { id: string; raw: string; headers: Array<{ name: string; value: string }> };
        const token = post.headers.find((h) => h.name.toLowerCase() === "x-soak-token")?.value ?? "?";
        const kill = this.killNext;
        this.killNext = null;
        const t: Took = { at: Date.now(), id: post.id, token, bytes: Buffer.from(post.raw, "base64").length, killedAfter: kill !== null };
        this.took.push(t);
        appendFileSync(this.logFile, JSON.stringify(t) + "\n");
        if (kill) { kill(); await Bun.sleep(50); }
        return new Response("ok");
      },
    });
  }

  /** Hung posts get a 503 when the receiver leaves "hang" (as a restarted receiver's proxy would). */
  set(mode: HookMode): void {
    this.mode = mode;
    if (mode !== "hang") for (const r of this.hung.splice(0)) r(new Response("restarted", { status: 503 }));
  }

  stop(): void {
    this.set("ok");
    this.server.stop(true);
  }
}
