/** TLS options and SESSION_MEMORY_TLS* parsing, without a server (round trips: tests/integration/test_tls.py). */
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MemoryClient } from "../src/index.js";
import { nodeTlsOptions, tlsFromEnv } from "../src/tls.js";

// The parser checks that a file is PEM of the right kind; the TLS stack checks the rest.
const CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

describe("TLS from the environment", () => {
  let dir: string;
  let files: { ca: string; cert: string; key: string; notPem: string };
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), "sm-tls-"));
    files = { ca: path.join(dir, "ca.pem"), cert: path.join(dir, "c.pem"), key: path.join(dir, "c.key"), notPem: path.join(dir, "x.der") };
    writeFileSync(files.ca, CERT);
    writeFileSync(files.cert, CERT);
    writeFileSync(files.key, KEY);
    writeFileSync(files.notPem, Buffer.from([0x30, 0x82, 0x01]));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("no variable, or SESSION_MEMORY_TLS=false, is plaintext", () => {
    assert.equal(tlsFromEnv({}), undefined);
    assert.equal(tlsFromEnv({ SESSION_MEMORY_TLS: "false" }), undefined);
  });

  test("SESSION_MEMORY_TLS=true alone is TLS with Node's roots", () => {
    for (const flag of ["true", "1", "yes", "TRUE", " on "]) {
      assert.deepEqual(tlsFromEnv({ SESSION_MEMORY_TLS: flag }), {}, flag);
    }
  });

  test("a CA, a client certificate and a server name each imply TLS", () => {
    assert.deepEqual(tlsFromEnv({ SESSION_MEMORY_TLS_CA: files.ca }), { ca: Buffer.from(CERT) });
    assert.deepEqual(tlsFromEnv({ SESSION_MEMORY_CLIENT_CERT: files.cert, SESSION_MEMORY_CLIENT_KEY: files.key }), {
      cert: Buffer.from(CERT),
      key: Buffer.from(KEY),
    });
    assert.deepEqual(tlsFromEnv({ SESSION_MEMORY_TLS_SERVER_NAME: "memory.internal" }), { serverName: "memory.internal" });
  });

  test("a certificate without its key (or a key without its certificate) is a configuration error", () => {
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_CLIENT_CERT: files.cert }), {
      message: "SESSION_MEMORY_CLIENT_CERT is set without SESSION_MEMORY_CLIENT_KEY: a client certificate needs its private key",
    });
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_CLIENT_KEY: files.key }), {
      message: "SESSION_MEMORY_CLIENT_KEY is set without SESSION_MEMORY_CLIENT_CERT: a client certificate needs its private key",
    });
    const saved = { ...process.env };
    try {
      process.env.SESSION_MEMORY_CLIENT_CERT = files.cert;
      delete process.env.SESSION_MEMORY_CLIENT_KEY;
      assert.throws(() => MemoryClient.fromEnv(), /SESSION_MEMORY_CLIENT_CERT is set without SESSION_MEMORY_CLIENT_KEY/);
      // An explicit tls option wins over the environment.
      assert.ok(MemoryClient.fromEnv({ tls: false }) instanceof MemoryClient);
    } finally {
      process.env = saved;
    }
  });

  test("other configurations that do not fit", () => {
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_TLS: "maybe" }), /SESSION_MEMORY_TLS="maybe": use true or false/);
    assert.throws(
      () => tlsFromEnv({ SESSION_MEMORY_TLS: "no", SESSION_MEMORY_TLS_CA: files.ca }),
      /SESSION_MEMORY_TLS=no but SESSION_MEMORY_TLS_CA is set/,
    );
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_TLS_CA: path.join(dir, "missing.pem") }), /missing\.pem: cannot read it \(ENOENT\)/);
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_TLS_CA: files.notPem }), /x\.der: not a PEM file/);
    assert.throws(() => tlsFromEnv({ SESSION_MEMORY_CLIENT_CERT: files.key, SESSION_MEMORY_CLIENT_KEY: files.key }), /c\.key: not a PEM file with a -----BEGIN CERTIFICATE block/);
  });
});

describe("TLS options", () => {
  test("they become node:http2's connect options", () => {
    assert.deepEqual(nodeTlsOptions({}), {});
    assert.deepEqual(nodeTlsOptions({ ca: CERT, cert: CERT, key: KEY, serverName: "memory.internal" }), {
      ca: CERT,
      cert: CERT,
      key: KEY,
      servername: "memory.internal",
    });
  });

  test("a certificate without its key is refused by the constructor", () => {
    assert.throws(() => new MemoryClient("localhost:1", { tls: { cert: CERT } }), {
      name: "TypeError",
      message: "tls.cert without tls.key: a client certificate needs its private key",
    });
    assert.throws(() => new MemoryClient("localhost:1", { tls: { key: KEY } }), /tls\.key without tls\.cert/);
    assert.ok(new MemoryClient("localhost:1", { tls: true }) instanceof MemoryClient);
  });
});
