/**
 * Replies after the client ended its side (half-open sockets): the library writes only while a
 * socket's readyState is "open"; this makes "writeOnly" read as "open" for one socket. Apart
 * from connection.ts: a property patch on Bun's socket classes, not session policy.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";

/**
 * A client that shut down its sending side after its last command still reads the replies owed
 * to it, as from Postfix. The plain socket is half-open from the listener (front.ts); the TLS
 * socket STARTTLS makes is not, and is made so here (session-registry.ts onSecure), or it
 * ended our side on the client's. The library writes a reply only while readyState is "open", not "writeOnly":
 * its check dropped them, the 250 of a message already stored included.
 */
export function repliesAfterClientEnd(socket: Socket | TLSSocket): void {
  socket.allowHalfOpen = true;
  const descriptor = readyStateDescriptor(Object.getPrototypeOf(socket) as object);
  if (descriptor) Object.defineProperty(socket, "readyState", descriptor);
}

/** The wrapped readyState getter per socket class, looked up once (every connection needs it). */
const readyStateDescriptors = new WeakMap<object, PropertyDescriptor | null>();

function readyStateDescriptor(socketProto: object): PropertyDescriptor | null {
  const known = readyStateDescriptors.get(socketProto);
  if (known !== undefined) return known;
  let proto: object | null = socketProto;
  while (proto && !Object.getOwnPropertyDescriptor(proto, "readyState")) proto = Object.getPrototypeOf(proto) as object | null;
  const readyState = proto ? Object.getOwnPropertyDescriptor(proto, "readyState")?.get : undefined;
  const descriptor: PropertyDescriptor | null = readyState
    ? {
        configurable: true,
        get(this: Socket): string {
          const state = readyState.call(this) as string;
          return state === "writeOnly" ? "open" : state;
        },
      }
    : null;
  readyStateDescriptors.set(socketProto, descriptor);
  return descriptor;
}
