/**
 * TLS of a {@link MemoryClient}: how the server is verified and, for mTLS, the
 * client's certificate; from options or from the SESSION_MEMORY_TLS* variables.
 */
import { readFileSync } from "node:fs";
import type { SecureClientSessionOptions } from "node:http2";

/** TLS options of a MemoryClient (`{ tls: { ... } }`; `{ tls: true }` is `{}`). */
export interface TlsOptions {
  /** PEM CA bundle to verify the server with. Default: Node's root certificates. */
  ca?: string | Buffer;
  /** PEM client certificate (chain) for a server that requires one (mTLS). Needs `key`. */
  cert?: string | Buffer;
  /** PEM private key of `cert`. */
  key?: string | Buffer;
  /** The name to check in the server's certificate. Default: the address's host. */
  serverName?: string;
}

/**
 * The `node:http2` connect options of `tls`.
 * @throws TypeError `cert` without `key` or `key` without `cert`.
 * @internal
 */
export function nodeTlsOptions(tls: TlsOptions): SecureClientSessionOptions {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError(
      `tls.${tls.cert === undefined ? "key" : "cert"} without tls.${tls.cert === undefined ? "cert" : "key"}: ` +
        "a client certificate needs its private key",
    );
  }
  return {
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }),
    ...(tls.serverName === undefined ? {} : { servername: tls.serverName }),
  };
}

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["", "0", "false", "no", "off"]);
/** Each of these turns TLS on by itself. */
const IMPLY_TLS = ["SESSION_MEMORY_TLS_CA", "SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_TLS_SERVER_NAME"];

function pem(env: NodeJS.ProcessEnv, name: string, marker: string): Buffer | undefined {
  const path = env[name];
  if (!path) return undefined;
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new Error(`${name}=${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (!data.includes(marker)) throw new Error(`${name}=${path}: not a PEM file with a ${marker} block`);
  return data;
}

/**
 * TLS from the environment, or undefined for plaintext:
 * `SESSION_MEMORY_TLS=true` (TLS, Node's roots), `SESSION_MEMORY_TLS_CA` (a PEM
 * CA bundle), `SESSION_MEMORY_CLIENT_CERT` + `SESSION_MEMORY_CLIENT_KEY` (a PEM client
 * certificate and its key, mTLS), `SESSION_MEMORY_TLS_SERVER_NAME` (the name to
 * check in the server's certificate). Each but the first implies TLS.
 * @throws Error a file is unreadable or not PEM, a certificate comes without its
 *   key (or a key without its certificate), `SESSION_MEMORY_TLS` is not a
 *   boolean or is false while another TLS variable is set.
 */
export function tlsFromEnv(env: NodeJS.ProcessEnv = process.env): TlsOptions | undefined {
  const flag = (env.SESSION_MEMORY_TLS ?? "").trim().toLowerCase();
  if (!TRUE.has(flag) && !FALSE.has(flag)) {
    throw new Error(`SESSION_MEMORY_TLS=${JSON.stringify(flag)}: use true or false`);
  }
  const cert = env.SESSION_MEMORY_CLIENT_CERT;
  const key = env.SESSION_MEMORY_CLIENT_KEY;
  if (Boolean(cert) !== Boolean(key)) {
    const [given, missing] = cert
      ? ["SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_CLIENT_KEY"]
      : ["SESSION_MEMORY_CLIENT_KEY", "SESSION_MEMORY_CLIENT_CERT"];
    throw new Error(`${given} is set without ${missing}: a client certificate needs its private key`);
  }
  const implied = IMPLY_TLS.filter((name) => env[name]);
  if (flag !== "" && FALSE.has(flag) && implied.length > 0) {
    throw new Error(`SESSION_MEMORY_TLS=${flag} but ${implied[0]} is set: that needs TLS`);
  }
  if (!TRUE.has(flag) && implied.length === 0) return undefined;
  const options: TlsOptions = {};
  const ca = pem(env, "SESSION_MEMORY_TLS_CA", "-----BEGIN CERTIFICATE");
  if (ca !== undefined) options.ca = ca;
  const certPem = pem(env, "SESSION_MEMORY_CLIENT_CERT", "-----BEGIN CERTIFICATE");
  const keyPem = pem(env, "SESSION_MEMORY_CLIENT_KEY", "PRIVATE KEY-----");
  if (certPem !== undefined && keyPem !== undefined) {
    options.cert = certPem;
    options.key = keyPem;
  }
  if (env.SESSION_MEMORY_TLS_SERVER_NAME) options.serverName = env.SESSION_MEMORY_TLS_SERVER_NAME;
  return options;
}
