/** Starts the real stack (Redis, SeaweedFS, the Python server) for the tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

export interface Stack {
  address: string;
  apiKey: string;
  otherApiKey: string;
  /** A key of a tenant limited to 5 reads and 5 writes per second (bursts of 5). */
  limitedApiKey: string;
  stop(): Promise<void>;
}

export async function startStack(): Promise<Stack> {
  const python = process.env.SESSION_MEMORY_PYTHON ?? path.join(repoRoot, ".venv/bin/python");
  const child: ChildProcess = spawn(python, ["-m", "sessionmemory_server.testing"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the test stack did not start in 90 s")), 90_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once("exit", (code) => reject(new Error(`the test stack exited with ${code}`)));
  });
  const info = JSON.parse(first) as { address: string; api_key: string; other_api_key: string; limited_api_key: string };
  return {
    address: info.address,
    apiKey: info.api_key,
    otherApiKey: info.other_api_key,
    limitedApiKey: info.limited_api_key,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.stdin!.end();
      }),
  };
}
