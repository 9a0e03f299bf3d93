/**
 * Binding the SMTP port: the probe serve runs before it touches the database or the spool
 * (probeSmtpPort), and the listen itself. Separate from server.ts because both turn a bind
 * failure into the one start-up error naming SMTP_HOST/SMTP_PORT, with the fix for it.
 * Failure: a CliError (serve exits 1); nothing here runs per session.
 */
import { connect, type AddressInfo, type Server } from "node:net";
import { CliError } from "../errors.ts";

/**
 * How to fix the common bind failures. EACCES on port 25 is what an admin sees after setting
 * SMTP_PORT=25 in the env file without re-running `systemd install` (the unit then has no
 * CAP_NET_BIND_SERVICE); a bare errno in a restart loop does not say that.
 */
function listenHint(code: string | undefined, port: number): string {
  if (code === "EACCES" && port > 0 && port < 1024) {
    return ` (a port below 1024 needs CAP_NET_BIND_SERVICE: run \`mailgw systemd install\` again after changing SMTP_PORT, or keep 2525 behind nginx or a 25→2525 redirect)`;
  }
  if (code === "EADDRINUSE") return " (another process listens there: stop it or choose another SMTP_PORT)";
  if (code === "EADDRNOTAVAIL") return " (SMTP_HOST is not an address of this machine)";
  return "";
}

/**
 * Refuses (as the listener would, EADDRINUSE) when something already accepts connections on
 * SMTP_HOST:SMTP_PORT. serve asks before it touches the database or the spool: an older serve
 * still running there took no DATA_DIR lock (versions before the lock), and a start that found
 * out only at listen had migrated the database under it and re-sent its deliveries in flight.
 * Asked by connecting, not by binding: a bound probe socket listens for a moment, and a client
 * (a readiness check polling the port, a sender) connected to it in that moment was reset.
 * Other bind failures (EACCES, EADDRNOTAVAIL) show at listen, as before: no other serve runs then.
 */
export async function probeSmtpPort(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const targets = host === "0.0.0.0" ? ["127.0.0.1"] : host === "::" ? ["::1", "127.0.0.1"] : [host];
  for (const target of targets) {
    if (await accepts(target, port)) {
      throw new CliError(`cannot listen on SMTP_HOST=${host} SMTP_PORT=${port}: EADDRINUSE${listenHint("EADDRINUSE", port)}`);
    }
  }
}

/** Whether a TCP connection to host:port is accepted within a second. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (answer: boolean): void => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

export function listen(server: Server, host: string, port: number, started: () => void): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new CliError(`cannot listen on SMTP_HOST=${host} SMTP_PORT=${port}: ${err.code ?? err.message}${listenHint(err.code, port)}`));
    };
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.off("error", onError);
      started();
      const address = server.address() as AddressInfo;
      resolve({ host: address.address, port: address.port });
    });
  });
}
